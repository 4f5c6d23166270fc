// A wallet account's console action (web/console/wallet_send.py): the service prepared the
// transaction; the browser's wallet (EIP-1193, window.ethereum) sends it from the account's own
// address with eth_sendTransaction and pays its gas, and the form posts the hash back, which the
// service checks against what it prepared. The key stays in the wallet; without this script (or
// without a wallet) the page says in words what is needed.
//
// * form[data-wallet-send]: data-from, data-to, data-data, data-value, data-gas and data-chain
//   (hex) are the prepared transaction; the button sends it and the form posts tx_hash.
// * form[data-wallet-typed] (a wallet lender's offer): data-typed is the EIP-712 typed data as the
//   service wrote it, passed to eth_signTypedData_v4 untouched (its big numbers stay exact); the
//   form posts the signature.
(function () {
  "use strict";

  function show(root, name, on) {
    root.querySelectorAll("[data-wallet-" + name + "]").forEach(function (node) {
      node.hidden = !on;
    });
  }

  function reset(root) {
    ["missing", "other", "chain", "error", "waiting"].forEach(function (name) {
      show(root, name, false);
    });
  }

  function send(form, wallet) {
    var data = form.dataset;
    return wallet.request({method: "eth_requestAccounts"}).then(function (accounts) {
      if (!accounts.some(function (account) { return account.toLowerCase() === data.from.toLowerCase(); })) {
        throw new Error("other");
      }
      return wallet.request({method: "eth_chainId"});
    }).then(function (chainId) {
      if (parseInt(chainId, 16) !== parseInt(data.chain, 16)) {
        throw new Error("chain");
      }
      return wallet.request({method: "eth_sendTransaction", params: [{
        from: data.from, to: data.to, data: data.data, value: data.value, gas: data.gas
      }]});
    }).then(function (hash) {
      form.elements.tx_hash.value = hash;
      form.submit();
    });
  }

  function sign(form, wallet) {
    var data = form.dataset;
    return wallet.request({method: "eth_requestAccounts"}).then(function (accounts) {
      if (!accounts.some(function (account) { return account.toLowerCase() === data.from.toLowerCase(); })) {
        throw new Error("other");
      }
      return wallet.request({method: "eth_signTypedData_v4", params: [data.from, data.typed]});
    }).then(function (signature) {
      form.elements.signature.value = signature;
      form.submit();
    });
  }

  function wire(form, act) {
    var button = form.querySelector("[data-wallet-button]");
    if (!button) {
      return;
    }
    show(form, "noscript", false);
    button.hidden = false;
    button.addEventListener("click", function () {
      reset(form);
      if (!window.ethereum || typeof window.ethereum.request !== "function") {
        show(form, "missing", true);
        return;
      }
      button.disabled = true;
      show(form, "waiting", true);
      act(form, window.ethereum).catch(function (error) {
        var reason = error && error.message;
        show(form, "waiting", false);
        show(form, reason === "other" || reason === "chain" ? reason : "error", true);
        button.disabled = false;
      });
    });
  }

  document.querySelectorAll("form[data-wallet-send]").forEach(function (form) {
    wire(form, send);
  });
  document.querySelectorAll("form[data-wallet-typed]").forEach(function (form) {
    wire(form, sign);
  });
}());
