// Threshold's passkey ceremonies in the browser: sign-in (autofill, button,
// username-first), enrollment, "Verify it's you" and "Set up another". Uses the browsers' native WebAuthn JSON
// methods; the server does every check. No inline script: CSP forbids it.
"use strict";

(function () {
  const root = document.getElementById("ceremony");
  const catalogSource = document.getElementById("threshold-catalog");
  // A page state with no ceremony to run (such as "Set up another" at the passkey limit)
  // has no #passkey-ui: nothing to do.
  if (!root || !catalogSource || !document.getElementById("passkey-ui")) return;

  // Each entry under its code (web/http.py's _page_catalog), as the server's failures carry it.
  const catalog = JSON.parse(catalogSource.textContent);
  for (const code in catalog) catalog[code].code = code;
  const errorBox = document.getElementById("ceremony-error");
  const statusLine = document.getElementById("ceremony-status");
  const registering = root.dataset.ceremony === "enroll" || root.dataset.ceremony === "add";
  // Where the "password" and "set_up_later" next steps lead; empty: not offered on
  // this page (the sign-in page leaves data-password-url empty when the policy
  // allows no password fallback).
  const passwordUrl = root.dataset.passwordUrl || "";
  const laterUrl = root.dataset.laterUrl || "";
  let autofill = null; // AbortController of the pending conditional request
  let lastAction = null; // what "Try again" repeats

  function supported() {
    return (
      typeof window.PublicKeyCredential === "function" &&
      typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function" &&
      typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function" &&
      navigator.credentials
    );
  }

  function showError(entry) {
    document.getElementById("ceremony-error-title").textContent = entry.title;
    document.getElementById("ceremony-error-message").textContent = entry.message;
    showNextSteps(entry);
    errorBox.hidden = false;
    statusLine.textContent = "";
    errorBox.setAttribute("tabindex", "-1");
    errorBox.focus();
  }

  function clearError() {
    errorBox.hidden = true;
    showPageLinks(true);
  }

  // The page's own "Sign in with a password instead" (#password-link) steps
  // aside while the error's next steps offer the same link: one link, not two.
  function showPageLinks(show) {
    const passwordLink = document.getElementById("password-link");
    if (passwordLink) passwordLink.parentElement.hidden = !show;
  }

  // The password page gets the typed username (WCAG 3.3.7) in a cookie, not its URL.
  const carry = root.dataset.usernameCookie;
  ["password-link", "ceremony-password"].forEach((id) =>
    document.getElementById(id)?.addEventListener("click", () => {
      if (!carry) return;
      const typed = encodeURIComponent(document.getElementById("username").value.trim());
      const secure = location.protocol === "https:" ? "; Secure" : "";
      document.cookie = `${carry}=${typed}; Path=/; Max-Age=600; SameSite=Strict${secure}`;
    })
  );

  // The entry's next steps that this page can offer (web/_ceremony_notices.html
  // words each one; data-for picks the sign-in or the set-up wording).
  function showNextSteps(entry) {
    const steps = entry.nextSteps || [];
    const audience = registering ? "set-up" : "sign-in";
    const available = { password: Boolean(passwordUrl), set_up_later: Boolean(laterUrl) };
    let shown = 0;
    errorBox.querySelectorAll("[data-step]").forEach((item) => {
      const step = item.dataset.step;
      const show =
        steps.includes(step) &&
        available[step] !== false &&
        (!item.dataset.for || item.dataset.for === audience);
      item.hidden = !show;
      if (show) shown += 1;
    });
    document.getElementById("ceremony-next-steps").hidden = shown === 0;
    showPageLinks(!(steps.includes("password") && available.password));
    document.getElementById("ceremony-error-code").textContent = entry.code || "";
    if (passwordUrl) document.getElementById("ceremony-password").href = passwordUrl;
    if (laterUrl) document.getElementById("ceremony-later").href = laterUrl;
  }

  // The button that starts this page's ceremony.
  function primaryButton() {
    return root.querySelector("#passkey-button, #create-button, #verify-button, button[data-device]");
  }

  function busy(on) {
    root.querySelectorAll("button").forEach((b) => (b.disabled = on));
    root.setAttribute("aria-busy", on ? "true" : "false");
  }

  // The page's flow token (threshold/sessions/flow.py) goes with the options request:
  // the server refuses a page left idle too long, as "Session Expired".
  function flowHeaders() {
    return root.dataset.flow === undefined ? {} : { "X-Threshold-Flow": root.dataset.flow };
  }

  async function post(url, body, extraHeaders) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: Object.assign(
          {
            "Content-Type": "application/json",
            Accept: "application/json",
            "X-CSRFToken": root.dataset.csrf,
          },
          extraHeaders || {}
        ),
        body: JSON.stringify(body),
      });
    } catch (e) {
      throw { entry: catalog[registering ? "setup_unavailable" : "passkey_unavailable"] };
    }
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok || !data || data.status !== "ok") {
      const entry = (data && data.error) || catalog[registering ? "setup_unavailable" : "passkey_unavailable"];
      const wait = Math.min(5, Math.max(1, parseInt(response.headers.get("Retry-After"), 10) || 1));
      throw { entry: entry, data: data, status: response.status, retryAfterMs: wait * 1000 };
    }
    return data;
  }

  // A 503 (nothing stored) is sent once more after its Retry-After: the credential is still
  // good, where "Try again" would make another passkey on the device.
  async function postResult(url, body) {
    try {
      return await post(url, body);
    } catch (failure) {
      if (!failure || failure.status !== 503) throw failure;
      await new Promise((resolve) => setTimeout(resolve, failure.retryAfterMs));
      return post(url, body);
    }
  }

  // What a person sees when the browser ends the ceremony. One DOMException name covers
  // several causes (WebAuthn L3 §5.1.3, §5.1.4, §14.5.2); the context tells more:
  // registering; elapsedMs against timeoutMs (a timeout); offered (allowCredentials
  // listed the account's own passkeys: none is here, or the prompt was closed; not
  // so at step-up). An AbortError not our own is as unexplained as UnknownError.
  function browserError(error, context) {
    const name = error && error.name;
    const timedOut = context.timeoutMs && context.elapsedMs >= context.timeoutMs - 1000;
    switch (name) {
      case "NotAllowedError":
        if (timedOut) return catalog[context.registering ? "setup_timed_out" : "sign_in_timed_out"];
        if (context.registering) return catalog.setup_canceled;
        return catalog[context.offered ? "passkey_not_on_device" : "passkey_not_found_or_canceled"];
      case "InvalidStateError": // excludeCredentials matched; at sign-in, an unusable credential
        return catalog[context.registering ? "already_registered" : "passkey_not_on_device"];
      case "NotSupportedError":
        return catalog.not_supported;
      case "SecurityError": // the page's origin does not match the RP ID
        return catalog[context.registering ? "setup_unavailable" : "passkey_unavailable"];
      case "ConstraintError": // no authenticator can do what the options require
        return catalog.no_compatible_device;
      default: // UnknownError, AbortError, TypeError, ...
        return catalog.verification_incomplete;
    }
  }

  async function signIn(body, mediation) {
    const data = await post(root.dataset.optionsUrl, body, flowHeaders());
    const request = { publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(data.publicKey) };
    let controller = null;
    if (mediation) {
      controller = new AbortController();
      autofill = controller;
      request.mediation = mediation;
      request.signal = controller.signal;
    }
    const started = Date.now();
    let credential;
    try {
      credential = await navigator.credentials.get(request);
    } catch (error) {
      if (controller && controller.signal.aborted) return; // a newer request replaced this one
      const offered = data.publicKey.allowCredentials || [];
      throw {
        entry: browserError(error, {
          registering: false,
          elapsedMs: Date.now() - started,
          timeoutMs: data.publicKey.timeout,
          offered: offered.length > 0 && root.dataset.ceremony !== "step-up",
        }),
      };
    }
    if (!credential) return;
    busy(true);
    statusLine.textContent = "Verifying your passkey…";
    let result;
    try {
      result = await postResult(root.dataset.resultUrl, credential.toJSON());
    } catch (failure) {
      if (failure && failure.data && failure.data.unknownCredential) {
        await signalUnknown(data.publicKey.rpId || location.hostname, credential.id);
      }
      throw failure;
    }
    statusLine.textContent = root.dataset.ceremony === "step-up" ? "Verified. Continuing…" : "Signed in. Redirecting…";
    window.location.assign(result.redirect);  // every result endpoint says where to go
  }

  // The passkey was removed from this account (or never was in it): the WebAuthn
  // Signal API lets the password manager or device that offered it hide it.
  async function signalUnknown(rpId, credentialId) {
    if (typeof PublicKeyCredential.signalUnknownCredential !== "function") {
      root.dataset.signalUnknownCredential = "unsupported";
      return;
    }
    try {
      await PublicKeyCredential.signalUnknownCredential({ rpId: rpId, credentialId: credentialId });
      root.dataset.signalUnknownCredential = "sent";
    } catch (e) {
      root.dataset.signalUnknownCredential = "failed";
    }
  }

  // "Send a push to Threshold Verify": the number, then its state every 2 s; any answer but
  // "pending" posts the finish form. "Cancel" ends it (/sign-in/push/cancel) and puts the
  // username step back (docs/device-api.md, "Push sign-ins").
  async function push(username) {
    const data = await post(root.dataset.pushUrl, { username: username });
    const ui = document.getElementById("passkey-ui");
    const start = [...ui.childNodes];
    let waiting = true;
    ui.innerHTML =
      '<h2 tabindex="-1">Type this number in Threshold Verify</h2><p class="push-number" id="push-number"></p>' +
      "<p>Check where the request comes from, type the number and confirm. It expires in two minutes.</p>" +
      '<button type="button" class="link-button">Cancel</button>';
    document.getElementById("push-number").textContent = data.number;
    ui.lastChild.addEventListener("click", async () => {
      await run(async () => {
        await post(root.dataset.pushCancelUrl, {});
        waiting = false;
        statusLine.textContent = "";
        ui.replaceChildren(...start);
      });
      if (!waiting) {
        document.getElementById("push-button").focus();
        startAutofill();
      }
    });
    ui.firstChild.focus();
    statusLine.textContent = "Waiting for your approval…";
    const check = async () => {
      let state = "pending";
      try {
        const response = await fetch(root.dataset.pushStateUrl, { credentials: "same-origin", cache: "no-store" });
        if (response.ok) state = (await response.json()).state;
      } catch (e) {
        state = "pending"; // a network blip: ask again
      }
      if (!waiting) return; // canceled
      if (state === "pending") return window.setTimeout(check, 2000);
      if (state === "approved") statusLine.textContent = "Approved. Signing you in…";
      const form = document.createElement("form");
      form.method = "post";
      form.action = root.dataset.pushFinishUrl;
      form.innerHTML = '<input type="hidden" name="csrfmiddlewaretoken">';
      form.firstChild.value = root.dataset.csrf;
      document.body.append(form);
      form.submit();
    };
    window.setTimeout(check, 2000);
  }

  function stopAutofill() {
    if (autofill) {
      autofill.abort();
      autofill = null;
    }
  }

  async function startAutofill() {
    stopAutofill();
    if (
      typeof PublicKeyCredential.isConditionalMediationAvailable !== "function" ||
      !(await PublicKeyCredential.isConditionalMediationAvailable())
    ) {
      return;
    }
    try {
      await signIn({}, "conditional");
    } catch (failure) {
      busy(false);
      if (failure && failure.entry) {
        lastAction = null; // "Try again" offers the button: autofill waits in the field
        showError(failure.entry);
      }
    }
  }

  async function run(action) {
    lastAction = action;
    clearError();
    busy(true);
    try {
      await action();
    } catch (failure) {
      showError((failure && failure.entry) || catalog.verification_incomplete);
      // The button and "Continue" stopped the autofill request: offer it again
      // when the person goes back to the username field.
      if (root.dataset.ceremony === "sign-in") {
        // (Not while a push's number replaces the username step: a failed Cancel.)
        document.getElementById("username")?.addEventListener("focus", startAutofill, { once: true });
      }
    } finally {
      busy(false);
    }
  }

  async function enroll(body) {
    statusLine.textContent = "Follow your browser's prompt to create the passkey…";
    const data = await post(root.dataset.optionsUrl, body || {}, flowHeaders());
    const started = Date.now();
    let credential;
    try {
      credential = await navigator.credentials.create({
        publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(data.publicKey),
      });
    } catch (error) {
      throw {
        entry: browserError(error, {
          registering: true,
          elapsedMs: Date.now() - started,
          timeoutMs: data.publicKey.timeout,
          offered: false,
        }),
      };
    }
    statusLine.textContent = "Saving your passkey…";
    const result = await postResult(root.dataset.resultUrl, credential.toJSON());
    statusLine.textContent = root.dataset.ceremony === "add" ? "Your passkey is ready." : "Your passkey is ready. Signing you in…";
    window.location.assign(result.redirect);  // every result endpoint says where to go
  }

  if (!supported()) {
    const notSupported = document.getElementById("not-supported");
    if (notSupported) notSupported.hidden = false;
    document.getElementById("passkey-ui").hidden = true;
    return;
  }

  // "Try again" repeats what failed; after a failed autofill, it offers the button.
  const retry = document.getElementById("ceremony-retry");
  if (retry) retry.addEventListener("click", () => {
    if (lastAction) {
      stopAutofill();
      run(lastAction);
      return;
    }
    clearError();
    const button = primaryButton();
    if (button) button.focus();
  });

  if (root.dataset.ceremony === "sign-in") {
    document.getElementById("passkey-button").addEventListener("click", () => {
      stopAutofill();
      run(() => signIn({}, null));
    });
    // An empty username: the catalog's entry beside the field, describing it.
    const field = document.getElementById("username");
    const note = document.createElement("p");
    note.id = "username-error";
    note.className = "notice error";
    note.hidden = true;
    note.setAttribute("role", "alert");
    field.after(note);
    function required(show) {
      const entry = catalog.username_required;
      note.hidden = !show;
      note.textContent = show ? entry.title + ": " + entry.message : "";
      field.setAttribute("aria-invalid", show);
      field[show ? "setAttribute" : "removeAttribute"]("aria-describedby", note.id);
    }
    field.addEventListener("input", () => required(false));
    document.getElementById("username-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const username = field.value.trim();
      required(!username);
      if (!username) {
        field.focus();
        return;
      }
      stopAutofill();
      const pushing = event.submitter && event.submitter.id === "push-button";
      run(() => (pushing ? push(username) : signIn({ username: username }, null)));
    });
    startAutofill();
  } else if (root.dataset.ceremony === "enroll") {
    document.getElementById("create-button").addEventListener("click", () => run(() => enroll({})));
  } else if (root.dataset.ceremony === "step-up") {
    document.getElementById("verify-button").addEventListener("click", () => run(() => signIn({}, null)));
  } else if (root.dataset.ceremony === "add") {
    root.querySelectorAll("button[data-device]").forEach((button) => {
      button.addEventListener("click", () => run(() => enroll({ device: button.dataset.device })));
    });
  }
})();
