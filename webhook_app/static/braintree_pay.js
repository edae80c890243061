// The Braintree update page: Drop-in tokenizes the card in Braintree's iframes; we post only the nonce.
// No inline script (the page's Content-Security-Policy allows scripts from here and Braintree only).
(function () {
  "use strict";
  var form = document.getElementById("pay-form");
  var container = document.getElementById("dropin");
  var button = document.getElementById("pay-button");
  var status = document.getElementById("pay-status");
  var nonce = form && form.querySelector("input[name=payment_method_nonce]");
  if (!form || !container || !button || !nonce) { return; }

  function say(text) { status.textContent = text; }

  if (!window.braintree || !window.braintree.dropin) {
    say("The secure card form could not load. Please check your connection and reload the page.");
    return;
  }
  window.braintree.dropin.create({
    authorization: container.getAttribute("data-client-token"),
    container: container,
    preselectVaultedPaymentMethod: false,
    card: { cardholderName: { required: false } }
  }).then(function (instance) {
    say("");
    button.disabled = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (button.disabled) { return; }  // one submission per click, however impatient
      button.disabled = true;
      say("Checking your card…");
      instance.requestPaymentMethod().then(function (payload) {
        nonce.value = payload.nonce;
        say("Processing your payment…");
        form.submit();  // a normal navigation: the answer page says what happened
      }).catch(function () {
        button.disabled = false;
        say("Please check the card details above.");
      });
    });
  }).catch(function () {
    say("The secure card form could not load. Please reload the page.");
  });
})();
