// The holder's app (/app): when the reader has no time-zone preference yet (no amphora_tz
// cookie), keep the browser's own zone as one, once, and reload a page that was read (not a
// form's answer) if it was written in another zone. Without this script the pages are in UTC,
// or in the zone chosen on the account page.
(function () {
  "use strict";
  if (/(?:^|;\s*)amphora_tz=/.test(document.cookie)) {
    return;
  }
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  if (!zone || !/^[A-Za-z0-9_+\/-]{1,64}$/.test(zone)) {
    return;
  }
  var secure = window.location.protocol === "https:" ? "; Secure" : "";
  document.cookie = "amphora_tz=" + zone + "; Path=/app; Max-Age=31536000; SameSite=Lax" + secure;
  var meta = document.querySelector("meta[name=amphora-tz]");
  if (meta && meta.getAttribute("data-reload") === "yes" && meta.getAttribute("content") !== zone &&
      /(?:^|;\s*)amphora_tz=/.test(document.cookie)) {
    window.location.reload();
  }
}());
