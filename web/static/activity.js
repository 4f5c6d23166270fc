// The activity page (/app/activity): while an action is pending, follow the account's
// stream of status changes (GET /app/activity/events, server-sent events) and update its
// row in place: the status in words and the transaction number. An action the page does not
// list yet (made in another tab) reloads the page. Without this script the page reloads
// itself every few seconds while something is pending.
(function () {
  "use strict";
  var list = document.querySelector("ol.activity[data-events]");
  if (!list || typeof window.EventSource !== "function") {
    return;
  }
  var LABELS = {pending: list.dataset.pending, confirmed: list.dataset.confirmed, failed: list.dataset.failed};

  function pending() {
    return list.querySelector("[data-status=pending]") !== null;
  }

  function update(change) {
    var row = null;
    list.querySelectorAll("li[data-request]").forEach(function (item) {
      if (item.getAttribute("data-request") === change.request_id) {
        row = item;
      }
    });
    if (row === null) {
      window.location.reload();
      return;
    }
    var status = row.querySelector("[data-status]");
    if (status && LABELS[change.status]) {
      status.setAttribute("data-status", change.status);
      status.className = "status-" + change.status;
      status.querySelector("span").textContent = LABELS[change.status];
    }
    var tx = row.querySelector("[data-tx]");
    if (tx && change.tx_hash) {
      tx.querySelector("code").textContent = change.tx_hash;
      tx.hidden = false;
    }
    var hint = document.querySelector("[data-pending-hint]");
    if (hint) {
      hint.hidden = !pending();
    }
  }

  function follow() {
    var source = new EventSource(list.dataset.events);
    source.addEventListener("status", function (event) {
      try {
        update(JSON.parse(event.data));
      } catch (e) {
        // A message not understood changes nothing.
      }
    });
    source.addEventListener("end", function () {
      source.close();
      if (pending()) {
        follow();
      }
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        source.close();
      }
    });
  }

  if (pending()) {
    follow();
  }
}());
