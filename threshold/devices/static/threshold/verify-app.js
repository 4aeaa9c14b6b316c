// Threshold Verify on a phone (/verify/): an installable web app that speaks the device API
// (docs/device-api.md) as the desktop app does. Its P-256 key is made here with WebCrypto,
// non-extractable, and kept in IndexedDB; every request is a compact JWS (ES256) it signs.
// "Enable screen lock confirmation" registers a WebAuthn credential on the phone that only
// this app uses; every approval, and every "Add Account to Another Device", is then a
// user-verified assertion the server checks.
(() => {
  "use strict";
  const root = document.getElementById("verify");
  if (!root) return;
  const API = root.dataset.api;
  const POLL_MS = 3000;
  const SCREENS = ["start", "add", "returned", "added", "screen-lock", "home", "another"];
  const encoder = new TextEncoder();
  const $ = (id) => document.getElementById(id);

  // --- Encoding and signing ---------------------------------------------------------------

  function b64url(bytes) {
    let text = "";
    for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
    return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  const b64json = (value) => b64url(encoder.encode(JSON.stringify(value)));

  async function newKey() {
    const pair = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, false, [
      "sign",
    ]);
    const jwk = await crypto.subtle.exportKey("jwk", pair.publicKey);
    return { privateKey: pair.privateKey, jwk: { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y } };
  }

  async function sign(path, body, privateKey, header) {
    const now = Math.floor(Date.now() / 1000);
    const jti = b64url(crypto.getRandomValues(new Uint8Array(24)));
    const protectedHeader = { alg: "ES256", typ: "threshold-device-request+jwt", ...header };
    const input = `${b64json(protectedHeader)}.${b64json({ jti, iat: now, exp: now + 60, htu: path, body })}`;
    // WebCrypto's ECDSA signature is r || s, which is what JWS's ES256 is (RFC 7518 §3.4).
    const signature = await crypto.subtle.sign(
      { name: "ECDSA", hash: "SHA-256" },
      privateKey,
      encoder.encode(input),
    );
    return `${input}.${b64url(signature)}`;
  }

  class ApiError extends Error {
    constructor(status, error) {
      super(error.title || "Something went wrong");
      this.status = status;
      this.error = error;
    }
  }

  async function call(endpoint, body, privateKey, header) {
    const path = API + endpoint;
    const compact = await sign(path, body || {}, privateKey, header);
    let response;
    try {
      response = await fetch(path, {
        method: "POST",
        headers: { "Content-Type": "application/jose" },
        body: compact,
        cache: "no-store",
        credentials: "omit",
      });
    } catch (error) {
      throw new ApiError(0, {
        code: "offline",
        // The catalog's device_connection_issue, in the words of the seed's error.
        title: "Connection Issue",
        message:
          "Error: Connection Issue. Threshold could not be reached: check this phone's " +
          "connection and try again.",
      });
    }
    let data = {};
    try {
      data = await response.json();
    } catch (error) {
      data = {};
    }
    if (!response.ok || data.status !== "ok") {
      throw new ApiError(response.status, data.error || { title: "Something went wrong", message: "" });
    }
    return data;
  }

  const deviceCall = (account, endpoint, body) =>
    call(endpoint, body, account.privateKey, { kid: account.deviceId });

  // --- The account, in IndexedDB ----------------------------------------------------------

  function database() {
    return new Promise((resolve, reject) => {
      const opening = indexedDB.open("threshold-verify", 1);
      opening.onupgradeneeded = () => opening.result.createObjectStore("accounts");
      opening.onsuccess = () => resolve(opening.result);
      opening.onerror = () => reject(opening.error);
    });
  }

  async function store(mode, action) {
    const db = await database();
    return new Promise((resolve, reject) => {
      const request = action(db.transaction("accounts", mode).objectStore("accounts"));
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }
  const loadAccount = () => store("readonly", (accounts) => accounts.get("account"));
  const saveAccount = (account) => store("readwrite", (accounts) => accounts.put(account, "account"));
  const forgetAccount = () => store("readwrite", (accounts) => accounts.delete("account"));

  // --- Screens ----------------------------------------------------------------------------

  // The new screen's heading takes the focus (from the second screen on), and the tab's title
  // names it: hiding the screen whose button had the focus would drop it to the page's top,
  // and a screen reader would not hear that the screen changed.
  const titleSuffix = document.title.includes("\u00b7")
    ? document.title.slice(document.title.indexOf("\u00b7"))
    : "";
  let shown = null;
  function show(name) {
    for (const screen of SCREENS) $(`verify-${screen}`).hidden = screen !== name;
    const heading = $(`verify-${name}`).querySelector("h1");
    if (heading) {
      document.title = `${heading.textContent} ${titleSuffix}`.trim();
      heading.tabIndex = -1;
      if (shown !== null && shown !== name) heading.focus();
    }
    shown = name;
  }

  function showError(error) {
    const entry = (error && error.error) || {
      title: "Something went wrong",
      message: String((error && error.message) || error),
    };
    $("verify-error-title").textContent = entry.title;
    $("verify-error-message").textContent = entry.message || "";
    $("verify-error").hidden = false;
  }
  const clearError = () => {
    $("verify-error").hidden = true;
  };

  // A device Threshold no longer knows (removed, or its set-up canceled): start again.
  async function lost(error) {
    if (error instanceof ApiError && error.status === 401) {
      await forgetAccount();
      show("add");
    }
  }

  // --- Add account ------------------------------------------------------------------------

  function platform() {
    const agent = navigator.userAgent;
    if (/Android/i.test(agent)) return "android";
    if (/iPhone|iPad|iPod/i.test(agent)) return "ios";
    return "web";
  }

  async function addAccount(event) {
    event.preventDefault();
    clearError();
    const button = event.target.querySelector("button");
    button.disabled = true;
    try {
      const key = await newKey();
      const answer = await call(
        "enroll",
        {
          setup_code: $("verify-setup-code").value,
          name: $("verify-device-name").value,
          platform: platform(),
          app_version: "web",
          key_protection: "software",
        },
        key.privateKey,
        { jwk: key.jwk },
      );
      const account = {
        deviceId: answer.device_id,
        privateKey: key.privateKey,
        username: answer.username,
        returnedCode: answer.returned_code,
        state: "waiting",
        screenLock: false,
      };
      await saveAccount(account);
      waitForReturnedCode(account);
    } catch (error) {
      showError(error);
    } finally {
      button.disabled = false;
    }
  }

  function waitForReturnedCode(account) {
    $("verify-returned-code").textContent = account.returnedCode;
    show("returned");
    const check = async () => {
      let state = "waiting";
      try {
        state = (await deviceCall(account, "enrollment")).state;
      } catch (error) {
        if (error.status !== 0) {
          showError(error);
          await lost(error);
          return;
        }
      }
      if (state === "done") {
        account.state = "done";
        delete account.returnedCode;
        await saveAccount(account);
        $("verify-added-username").textContent = account.username;
        show("added");
      } else if (state === "canceled") {
        await forgetAccount();
        showError({
          error: {
            title: "Setup Code Not Valid",
            message: "The set-up was canceled. Show a new setup code and scan it again.",
          },
        });
        show("add");
      } else {
        window.setTimeout(check, 2000);
      }
    };
    window.setTimeout(check, 2000);
  }

  // --- Screen lock confirmation -----------------------------------------------------------

  async function enableScreenLock(account) {
    clearError();
    $("verify-enable").disabled = true;
    try {
      const { options } = await deviceCall(account, "screen-lock/options");
      const credential = await navigator.credentials.create({
        publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(options),
      });
      await deviceCall(account, "screen-lock", { credential: credential.toJSON() });
      account.screenLock = true;
      await saveAccount(account);
      home(account);
    } catch (error) {
      showError(error);
      await lost(error);
    } finally {
      $("verify-enable").disabled = false;
    }
  }

  // --- Approvals --------------------------------------------------------------------------

  let current = null; // the push on screen
  let polling = null;

  // What each kind of push asks (the API's "purpose"), in the words the phone shows.
  const ASKS = {
    sign_in: {
      heading: "Are you trying to sign in?",
      detail: "",
      waiting: "A sign-in request is waiting for you.",
      approved: "Approved: the browser signs in.",
    },
    step_up: {
      heading: "Are you verifying it\u2019s you?",
      detail:
        "A browser where you are signed in asks to verify it\u2019s you. Approving lets it " +
        "add a passkey to your account for the next few minutes.",
      waiting: "A request to verify it\u2019s you is waiting for you.",
      approved: "Approved: the browser may add a passkey now.",
    },
  };
  const asks = (push) => ASKS[push && push.purpose] || ASKS.sign_in;

  // Dates as the rest of Threshold writes them ("4 Dec 2026, 14:05"), in this phone's time.
  const MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(" ");
  function when(seconds) {
    const date = new Date(seconds * 1000);
    const two = (value) => String(value).padStart(2, "0");
    return (
      `${date.getDate()} ${MONTHS[date.getMonth()]} ${date.getFullYear()}, ` +
      `${two(date.getHours())}:${two(date.getMinutes())}`
    );
  }

  function showRequest(push) {
    if (current && current.id === push.id) return;
    current = push;
    const asked = asks(push);
    $("verify-request-heading").textContent = asked.heading;
    $("verify-request-detail").textContent = asked.detail;
    $("verify-request-detail").hidden = !asked.detail;
    $("verify-request-browser").textContent = push.browser;
    $("verify-request-ip").textContent = push.ip || "Unknown";
    $("verify-request-time").textContent = when(push.created_at);
    $("verify-request-time").dateTime = new Date(push.created_at * 1000).toISOString();
    $("verify-number").value = "";
    $("verify-request").hidden = false;
    $("verify-status").textContent = asked.waiting;
    if ("Notification" in window && Notification.permission === "granted" && document.hidden) {
      try {
        new Notification("Threshold Verify", { body: `${asked.heading} Type the number.` });
      } catch (error) {
        // Some browsers show notifications only from a service worker: the page still shows it.
      }
    }
  }

  function hideRequest(message) {
    current = null;
    $("verify-request").hidden = true;
    $("verify-status").textContent = message;
  }

  async function poll(account) {
    try {
      const { approvals } = await deviceCall(account, "approvals/pending");
      if (approvals.length) {
        showRequest(approvals[0]);
      } else if (current) {
        hideRequest("The request ended. Waiting for sign-in requests\u2026");
      }
    } catch (error) {
      if (error.status === 401) {
        window.clearInterval(polling);
        showError(error);
        await lost(error);
        return;
      }
    }
  }

  async function answer(account, decision) {
    if (!current) return;
    clearError();
    const push = current;
    const body = { id: push.id, decision };
    try {
      if (decision === "approve") {
        body.number = $("verify-number").value.trim();
        if (account.screenLock) {
          const { options } = await deviceCall(account, "approvals/options", { id: push.id });
          const assertion = await navigator.credentials.get({
            publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options),
          });
          body.assertion = assertion.toJSON();
        }
      }
      const result = await deviceCall(account, "approvals/answer", body);
      hideRequest(
        result.state === "approved"
          ? asks(push).approved
          : "Denied. Requests are paused for twenty minutes, and you will get an email.",
      );
    } catch (error) {
      showError(error);
      if (error instanceof ApiError && error.error.code !== "not_verified") {
        hideRequest("Waiting for sign-in requests\u2026");
      }
      await lost(error);
    }
  }

  // --- Add Account to Another Device -----------------------------------------------------

  // The set-up on screen (its enrollment ID), while its returned code may still be typed.
  let adding = null;

  function returnedCodeInvalid(invalid) {
    const input = $("verify-another-returned");
    if (invalid) {
      input.setAttribute("aria-invalid", "true");
      input.setAttribute("aria-describedby", "verify-error");
    } else {
      input.removeAttribute("aria-invalid");
      input.removeAttribute("aria-describedby");
    }
  }

  // The set-up is over (added, canceled, expired): its codes leave the screen, and the only
  // way on is back to the approvals.
  function endAnother(message, back) {
    adding = null;
    $("verify-another-shown").hidden = true;
    $("verify-another-qr").replaceChildren();
    $("verify-another-code").textContent = "";
    $("verify-another-status").textContent = message;
    $("verify-another-back").textContent = back;
    $("verify-another-back").focus();
  }

  function showSetupCode(issued) {
    adding = issued.enrollment_id;
    const image = document.createElement("img");
    image.className = "qr";
    image.src = issued.qr_code; // an SVG data: URI, made by the server
    image.alt = "QR code to add your account to another device";
    image.width = 220;
    image.height = 220;
    $("verify-another-qr").replaceChildren(image);
    $("verify-another-code").textContent = issued.setup_code;
    $("verify-another-expires").textContent = when(issued.expires_at);
    $("verify-another-expires").dateTime = new Date(issued.expires_at * 1000).toISOString();
    $("verify-another-returned").value = "";
    returnedCodeInvalid(false);
    $("verify-another-status").textContent = "";
    $("verify-another-back").textContent = "Cancel";
    $("verify-another-shown").hidden = false;
    show("another");
  }

  // Select the account and select Add Account to Another Device: the screen lock confirms
  // it (the server checks the assertion), then a QR code and a setup code are displayed.
  async function addAnother(account) {
    clearError();
    const button = $("verify-add-another");
    button.disabled = true;
    try {
      const { options } = await deviceCall(account, "setup-codes/options");
      const assertion = await navigator.credentials.get({
        publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(options),
      });
      showSetupCode(await deviceCall(account, "setup-codes", { assertion: assertion.toJSON() }));
    } catch (error) {
      showError(error);
      await lost(error);
    } finally {
      button.disabled = false;
    }
  }

  // The returned code the new device shows, entered here: the new device is added.
  async function confirmAnother(account, event) {
    if (!adding) return;
    clearError();
    const button = event.target.querySelector("button");
    button.disabled = true;
    try {
      const done = await deviceCall(account, "setup-codes/confirm", {
        enrollment_id: adding,
        returned_code: $("verify-another-returned").value.trim(),
      });
      endAnother(`Done: ${done.device_name} can now approve your sign-ins.`, "Done");
    } catch (error) {
      showError(error);
      if (error instanceof ApiError && error.error.code === "returned_code_invalid") {
        returnedCodeInvalid(true);
        $("verify-another-returned").select();
      } else if (error instanceof ApiError && error.status !== 0) {
        // Canceled after three wrong codes, or expired: a new setup code is needed.
        endAnother(
          "The set-up ended. Select Add Account to Another Device to start again.",
          "Back",
        );
      }
      await lost(error);
    } finally {
      button.disabled = false;
    }
  }

  // Cancel (or Done): back to the approvals, which kept being checked meanwhile.
  async function leaveAnother() {
    adding = null;
    clearError();
    $("verify-another-qr").replaceChildren();
    $("verify-another-code").textContent = "";
    const account = await loadAccount();
    if (account) home(account);
    else show("add");
  }

  // --- Web Push ---------------------------------------------------------------------------

  function serverKey() {
    const text = root.dataset.pushKey.replace(/-/g, "+").replace(/_/g, "/");
    return Uint8Array.from(atob(text + "===".slice((text.length + 3) % 4)), (c) => c.charCodeAt(0));
  }

  // Subscribes with the push service (the server's VAPID key as applicationServerKey) and
  // hands the subscription to Threshold, signed; again whenever the browser changed it.
  // Without Web Push (off on the server, refused, unsupported) the app polls while open.
  async function subscribePush(account) {
    if (!root.dataset.pushKey || !("serviceWorker" in navigator) || !("PushManager" in window)) {
      return;
    }
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    try {
      const registration = await navigator.serviceWorker.ready;
      let subscription = await registration.pushManager.getSubscription();
      const key = subscription && subscription.options.applicationServerKey;
      if (subscription && (!key || b64url(key) !== root.dataset.pushKey)) {
        await subscription.unsubscribe(); // made for the server's previous VAPID key
        subscription = null;
      }
      if (!subscription) {
        subscription = await registration.pushManager.subscribe({
          userVisibleOnly: true,
          applicationServerKey: serverKey(),
        });
      }
      const json = subscription.toJSON();
      if (account.pushEndpoint === json.endpoint) return;
      await deviceCall(account, "push-subscription", { subscription: json });
      account.pushEndpoint = json.endpoint;
      await saveAccount(account);
      root.dataset.pushSubscribed = "true";
    } catch (error) {
      root.dataset.pushSubscribed = "failed";
    }
  }

  function home(account) {
    subscribePush(account);
    $("verify-username").textContent = account.username;
    show("home");
    if (polling === null) {
      poll(account);
      polling = window.setInterval(() => poll(account), POLL_MS);
    }
  }

  // --- Start ------------------------------------------------------------------------------

  function takeSetupCode() {
    // The QR code's link carries the setup code after "#", which the browser never sends to
    // the server; it leaves the address bar (and the history) as soon as it is read.
    const match = /(?:^#|&)setup=([A-Za-z0-9-]+)/.exec(window.location.hash);
    if (match) history.replaceState(null, "", window.location.pathname);
    return match ? match[1] : "";
  }

  async function start() {
    if ("serviceWorker" in navigator) {
      navigator.serviceWorker
        .register(root.dataset.worker, { scope: root.dataset.scope })
        .catch(() => {}); // the app works without it, only not offline
    }
    const code = takeSetupCode();
    if (!window.crypto || !crypto.subtle || !window.indexedDB) return; // the start screen says how
    let account = null;
    try {
      account = await loadAccount();
    } catch (error) {
      account = null;
    }
    $("verify-add-form").addEventListener("submit", addAccount);
    $("verify-got-it").addEventListener("click", async () => {
      // Got it and Allow for notifications: the permission, then the Web Push subscription.
      const saved = await loadAccount();
      if ("Notification" in window && Notification.permission === "default") {
        try {
          await Notification.requestPermission();
        } catch (error) {
          // Refused or unsupported: the app still shows requests while it is open.
        }
      }
      if (saved) await subscribePush(saved);
      show(saved && saved.screenLock ? "home" : "screen-lock");
    });
    $("verify-enable").addEventListener("click", async () => enableScreenLock(await loadAccount()));
    $("verify-answer-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      answer(await loadAccount(), "approve");
    });
    $("verify-deny").addEventListener("click", async () => answer(await loadAccount(), "deny"));
    $("verify-add-another").addEventListener("click", async () => addAnother(await loadAccount()));
    $("verify-another-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      confirmAnother(await loadAccount(), event);
    });
    $("verify-another-back").addEventListener("click", leaveAnother);
    if (!account) {
      $("verify-setup-code").value = code;
      show("add");
    } else if (account.state !== "done") {
      waitForReturnedCode(account);
    } else if (!account.screenLock) {
      show("screen-lock");
    } else {
      home(account);
    }
  }

  start();
})();
