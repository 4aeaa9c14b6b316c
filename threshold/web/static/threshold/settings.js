// Settings: keeps password managers in step with the account through the
// WebAuthn Signal API (feature-detected; browsers without it are left alone),
// and puts the cursor in a field the server refused, or in the nickname field of a
// passkey just set up.
"use strict";

(function () {
  const source = document.getElementById("threshold-signals");
  const section = document.getElementById("security-methods");
  if (!source || !section) return;
  const signals = JSON.parse(source.textContent);

  // What was signalled, readable in the page: data-signal-* on the section.
  function report(name, outcome) {
    section.dataset["signal" + name] = outcome;
  }

  async function signal(name, method, options) {
    const api = window.PublicKeyCredential;
    if (!api || typeof api[method] !== "function") {
      report(name, "unsupported");
      return;
    }
    try {
      await api[method](options);
      report(name, "sent");
    } catch (e) {
      report(name, "failed");
    }
  }

  // Every passkey this account still accepts: the others (removed here, or
  // elsewhere) are hidden by the password manager that holds them.
  signal("AllAcceptedCredentials", "signalAllAcceptedCredentials", {
    rpId: signals.rpId,
    userId: signals.userId,
    allAcceptedCredentialIds: signals.allAcceptedCredentialIds,
  });

  if (signals.userDetailsChanged) {
    signal("CurrentUserDetails", "signalCurrentUserDetails", {
      rpId: signals.rpId,
      userId: signals.userId,
      name: signals.name,
      displayName: signals.displayName,
    });
  }

  // A refused field (its error tied to it) comes first; else a new passkey's nickname.
  const invalid = document.querySelector('main input[aria-invalid="true"]');
  const nickname = document.getElementById("new-nickname");
  if (invalid) {
    invalid.focus();
  } else if (nickname) {
    nickname.focus();
    nickname.select();
  }
})();
