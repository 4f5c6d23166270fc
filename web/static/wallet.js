// Self-custody pages of the holder's app: talk to the browser's wallet (EIP-1193,
// window.ethereum) and post what it signs to this service. Nothing else: the key stays
// in the wallet, and without this script (or without a wallet) the page says in words
// what is needed.
//
// * [data-wallet-connect] (the login page): eth_requestAccounts, a Sign-In with Ethereum
//   challenge from POST /auth/wallet/challenge, personal_sign, then the page's form posts
//   the message and signature to /app/wallet/login.
// * form[data-wallet-sign] (a wallet account's transfer, delivery request or report): the
//   typed data from the public GET /relay/typed-data/... the form names (data-typed),
//   eth_signTypedData_v4, then the form posts the nonce and signature, which the service
//   relays through the public POST /relay/... route of the action.
(function () {
  "use strict";

  function show(root, name, on) {
    root.querySelectorAll("[data-wallet-" + name + "]").forEach(function (node) {
      node.hidden = !on;
    });
  }

  function reset(root) {
    ["missing", "other", "error", "busy", "waiting"].forEach(function (name) {
      show(root, name, false);
    });
  }

  function hexOf(text) {
    var hex = "0x";
    new TextEncoder().encode(text).forEach(function (byte) {
      hex += (byte < 16 ? "0" : "") + byte.toString(16);
    });
    return hex;
  }

  function postJson(url, body) {
    return fetch(url, {
      method: "POST",
      headers: {"Content-Type": "application/json", "Accept": "application/json"},
      credentials: "same-origin",
      body: JSON.stringify(body)
    });
  }

  function failed(root, answer) {
    var error = new Error("refused");
    error.busy = answer && (answer.status === 429 || answer.status >= 500);
    return error;
  }

  function wire(root, act) {
    var button = root.querySelector("[data-wallet-button]");
    if (!button) {
      return;
    }
    show(root, "noscript", false);
    button.hidden = false;
    button.addEventListener("click", function () {
      reset(root);
      if (!window.ethereum || typeof window.ethereum.request !== "function") {
        show(root, "missing", true);
        return;
      }
      button.disabled = true;
      show(root, "waiting", true);
      act(root, window.ethereum).catch(function (error) {
        show(root, "waiting", false);
        show(root, error && error.message === "other" ? "other" : error && error.busy ? "busy" : "error", true);
        button.disabled = false;
      });
    });
  }

  function connect(root, wallet) {
    var form = root.querySelector("form");
    var address;
    return wallet.request({method: "eth_requestAccounts"}).then(function (accounts) {
      address = accounts[0];
      return postJson("/auth/wallet/challenge", {address: address});
    }).then(function (answer) {
      if (!answer.ok) {
        throw failed(root, answer);
      }
      return answer.json();
    }).then(function (challenge) {
      form.elements.message.value = challenge.message;
      return wallet.request({method: "personal_sign", params: [hexOf(challenge.message), address]});
    }).then(function (signature) {
      form.elements.signature.value = signature;
      form.submit();
    });
  }

  function sign(form, wallet) {
    var from = form.dataset.from;
    var typed;
    return wallet.request({method: "eth_requestAccounts"}).then(function (accounts) {
      if (!accounts.some(function (account) { return account.toLowerCase() === from.toLowerCase(); })) {
        throw new Error("other");
      }
      // The page names the public typed-data URL (GET /relay/typed-data/...) of its action.
      return fetch(form.dataset.typed, {headers: {"Accept": "application/json"}});
    }).then(function (answer) {
      if (!answer.ok) {
        throw failed(form, answer);
      }
      return answer.json();
    }).then(function (data) {
      typed = data;
      return wallet.request({method: "eth_signTypedData_v4", params: [from, JSON.stringify(typed)]});
    }).then(function (signature) {
      form.elements.nonce.value = typed.message.nonce;
      form.elements.signature.value = signature;
      form.submit();
    });
  }

  document.querySelectorAll("[data-wallet-connect]").forEach(function (root) {
    wire(root, connect);
  });
  document.querySelectorAll("form[data-wallet-sign]").forEach(function (form) {
    wire(form, sign);
  });
}());
