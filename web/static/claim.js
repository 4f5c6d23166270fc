// The gift claim page (/app/claim/<token id>): copy the claim secret from the link's
// fragment (#claim=0x...), which the browser never sends to the server, into the page's
// forms, and hide the then-filled field. Nothing else: without this script the person
// pastes the link into the field.
(function () {
  "use strict";
  var match = /(?:^#|&)claim=(0x[0-9a-fA-F]{64})(?:&|$)/.exec(window.location.hash);
  if (!match) {
    return;
  }
  document.querySelectorAll("[data-claim-secret]").forEach(function (group) {
    var field = group.querySelector("input[name=secret]");
    if (field && !field.value && !group.classList.contains("has-error")) {
      field.value = match[1];
      group.hidden = true;
    }
  });
}());
