/* Opens Paddle's overlay checkout on the transaction this page was made for
   (https://developer.paddle.com/build/subscriptions/update-payment-details). A file, not an inline
   script: the page's Content-Security-Policy allows only this file and Paddle's own script. */
(function () {
  "use strict";
  var root = document.getElementById("paddle-checkout");
  var button = document.getElementById("open-checkout");
  var status = document.getElementById("checkout-status");
  if (!root || !button || !status) { return; }
  var completed = false;

  function say(text) { status.textContent = text; }

  if (!window.Paddle || !window.Paddle.Checkout) {
    say("The secure checkout could not be loaded. Check your connection and reload this page.");
    return;
  }

  function onEvent(event) {
    var name = event && event.name;
    if (name === "checkout.completed") {
      completed = true;
      button.hidden = true;
      say("Thank you! Your payment method is updated. You can close this page.");
    } else if (name === "checkout.closed" && !completed) {
      say("The checkout was closed before it finished; nothing has changed. Open it again when you are ready.");
      button.focus();
    } else if (name === "checkout.error" || name === "checkout.failed") {
      say("Something went wrong in the checkout. Please try again.");
    }
  }

  function open() {
    say("");
    Paddle.Checkout.open({
      transactionId: root.getAttribute("data-transaction-id"),
      settings: { displayMode: "overlay", allowLogout: false }
    });
  }

  try {
    if (root.getAttribute("data-environment") === "sandbox") { Paddle.Environment.set("sandbox"); }
    Paddle.Initialize({ token: root.getAttribute("data-client-token"), eventCallback: onEvent });
    button.disabled = false;
    button.addEventListener("click", open);
    open();
  } catch (error) {
    say("The secure checkout could not start. Reload this page to try again.");
  }
})();
