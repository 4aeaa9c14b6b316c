// Threshold's passkey ceremonies in the browser: sign-in (autofill, button,
// username-first), enrollment, "Verify it's you" and "Set up another". Uses the browsers' native WebAuthn JSON
// methods; the server does every check. No inline script: CSP forbids it.
"use strict";

(function () {
  const root = document.getElementById("ceremony");
  if (!root) return;

  const catalog = JSON.parse(document.getElementById("threshold-catalog").textContent);
  const errorBox = document.getElementById("ceremony-error");
  const statusLine = document.getElementById("ceremony-status");
  let autofill = null; // AbortController of the pending conditional request

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
    errorBox.hidden = false;
    statusLine.textContent = "";
    errorBox.setAttribute("tabindex", "-1");
    errorBox.focus();
  }

  function clearError() {
    errorBox.hidden = true;
  }

  function busy(on) {
    root.querySelectorAll("button").forEach((b) => (b.disabled = on));
    root.setAttribute("aria-busy", on ? "true" : "false");
  }

  const registering = root.dataset.ceremony === "enroll" || root.dataset.ceremony === "add";

  async function post(url, body) {
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          "X-CSRFToken": root.dataset.csrf,
        },
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
      throw { entry: entry, data: data };
    }
    return data;
  }

  // What a person sees when the browser, not the server, ends the ceremony.
  function browserError(error, startedAt, timeoutMs, registering) {
    const name = error && error.name;
    const timedOut = timeoutMs && Date.now() - startedAt >= timeoutMs - 1000;
    if (name === "NotAllowedError") {
      if (timedOut) return catalog[registering ? "setup_timed_out" : "sign_in_timed_out"];
      return catalog[registering ? "setup_canceled" : "passkey_not_found_or_canceled"];
    }
    if (name === "InvalidStateError" && registering) return catalog.already_registered;
    if (name === "NotSupportedError") return catalog.not_supported;
    if (name === "SecurityError") return catalog[registering ? "setup_unavailable" : "passkey_unavailable"];
    if (name === "ConstraintError") return catalog.no_compatible_device;
    return catalog.verification_incomplete;
  }

  async function signIn(body, mediation) {
    const started = Date.now();
    const data = await post(root.dataset.optionsUrl, body);
    const request = { publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(data.publicKey) };
    if (mediation) {
      autofill = new AbortController();
      request.mediation = mediation;
      request.signal = autofill.signal;
    }
    let credential;
    try {
      credential = await navigator.credentials.get(request);
    } catch (error) {
      if (error && error.name === "AbortError") return; // a newer request replaced this one
      throw { entry: browserError(error, started, data.publicKey.timeout, false) };
    }
    if (!credential) return;
    busy(true);
    statusLine.textContent = "Verifying your passkey…";
    let result;
    try {
      result = await post(root.dataset.resultUrl, credential.toJSON());
    } catch (failure) {
      if (failure && failure.data && failure.data.unknownCredential) {
        await signalUnknown(data.publicKey.rpId || location.hostname, credential.id);
      }
      throw failure;
    }
    statusLine.textContent = root.dataset.ceremony === "step-up" ? "Verified. Continuing…" : "Signed in. Redirecting…";
    window.location.assign(result.redirect || "/");
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
      if (failure && failure.entry) showError(failure.entry);
    }
  }

  async function run(action) {
    clearError();
    busy(true);
    try {
      await action();
    } catch (failure) {
      showError((failure && failure.entry) || catalog.verification_incomplete);
      // The button and "Continue" stopped the autofill request: offer it again
      // when the person goes back to the username field.
      if (root.dataset.ceremony === "sign-in") {
        document.getElementById("username").addEventListener("focus", startAutofill, { once: true });
      }
    } finally {
      busy(false);
    }
  }

  async function enroll(body) {
    const started = Date.now();
    statusLine.textContent = "Follow your browser's prompt to create the passkey…";
    const data = await post(root.dataset.optionsUrl, body || {});
    let credential;
    try {
      credential = await navigator.credentials.create({
        publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(data.publicKey),
      });
    } catch (error) {
      throw { entry: browserError(error, started, data.publicKey.timeout, true) };
    }
    statusLine.textContent = "Saving your passkey…";
    const result = await post(root.dataset.resultUrl, credential.toJSON());
    statusLine.textContent = root.dataset.ceremony === "add" ? "Your passkey is ready." : "Your passkey is ready. Signing you in…";
    window.location.assign(result.redirect || "/");
  }

  if (!supported()) {
    document.getElementById("not-supported").hidden = false;
    document.getElementById("passkey-ui").hidden = true;
    return;
  }

  if (root.dataset.ceremony === "sign-in") {
    document.getElementById("passkey-button").addEventListener("click", () => {
      stopAutofill();
      run(() => signIn({}, null));
    });
    document.getElementById("username-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const username = document.getElementById("username").value.trim();
      if (!username) {
        document.getElementById("username").focus();
        return;
      }
      stopAutofill();
      run(() => signIn({ username: username }, null));
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
