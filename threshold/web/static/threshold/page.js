// What every page shares (web/base.html): the account menu closes on Escape and on a click
// outside it; the skip link shows while it has the focus; and a form whose POST was sent to
// "Verify it's you" first comes back as it was typed, to be checked and sent again. Nothing
// is sent again by itself: a change is made only when the person submits it once verified.
"use strict";

(function () {
  // --- The account menu (a <details>) ------------------------------------------------------

  const menu = document.querySelector("details.account-menu");
  if (menu) {
    const summary = menu.querySelector("summary");
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && menu.open) {
        menu.open = false;
        summary.focus();
      }
    });
    document.addEventListener("click", function (event) {
      if (menu.open && !menu.contains(event.target)) menu.open = false;
    });
  }

  // --- A form that came back refused -----------------------------------------------------

  // Its field in error (aria-invalid, tied to the error by aria-describedby) takes the focus,
  // so that the error is read with it, unless something took the focus already (autofocus).
  const invalid = document.querySelector('main [aria-invalid="true"]');
  if (invalid && (!document.activeElement || document.activeElement === document.body)) {
    invalid.focus();
  }

  // --- "Skip to main content" ------------------------------------------------------------

  const skip = document.querySelector("a.skip-link");
  if (skip) {
    skip.addEventListener("focus", function () {
      skip.classList.remove("visually-hidden");
    });
    skip.addEventListener("blur", function () {
      skip.classList.add("visually-hidden");
    });
  }

  // --- A form across "Verify it's you" ---------------------------------------------------

  // Kept in this tab only (sessionStorage), for a quarter of an hour at most, and only what
  // a person typed that is no secret: no password, one-time code or hidden field, no file,
  // nothing marked data-secret. Told by the field's type, autocomplete and mark, not by its
  // name: the policy's allow_password_fallback is a setting, not a password. A hidden field
  // marked data-keep comes back too: the version of the policy the form was made from, so a
  // change saved meanwhile is still caught.
  const KEY = "threshold.form-before-verifying";
  const MAX_AGE_MS = 15 * 60 * 1000;
  const SKIPPED_TYPES = ["hidden", "password", "file", "submit", "button", "reset", "image"];

  function storage() {
    try {
      return window.sessionStorage;
    } catch (error) {
      return null; // storage turned off: the form is not kept
    }
  }

  function read(store) {
    try {
      const saved = JSON.parse(store.getItem(KEY) || "null");
      if (saved && Date.now() - saved.at <= MAX_AGE_MS) return saved;
    } catch (error) {
      // unreadable: forgotten below
    }
    store.removeItem(KEY);
    return null;
  }

  function keeps(field) {
    if (!field.name || field.disabled) return false;
    if (field.type === "hidden" && field.hasAttribute("data-keep")) return true;
    if (SKIPPED_TYPES.indexOf(field.type) !== -1) return false;
    if (/password|one-time-code/.test(field.autocomplete || "")) return false;
    return !field.hasAttribute("data-secret");
  }

  function actionOf(form) {
    const url = new URL(form.action, window.location.href);
    return url.pathname + url.search;
  }

  function typed(form) {
    const fields = [];
    for (const field of form.elements) {
      if (!keeps(field)) continue;
      if (field.type === "checkbox" || field.type === "radio") {
        fields.push({ name: field.name, value: field.value, checked: field.checked });
      } else if (field.type === "select-multiple") {
        const chosen = Array.from(field.selectedOptions, (option) => option.value);
        fields.push({ name: field.name, values: chosen });
      } else {
        fields.push({ name: field.name, value: field.value });
      }
    }
    return fields;
  }

  function fill(form, fields) {
    const queue = {}; // several fields of one name: in their order
    for (const saved of fields) (queue[saved.name] = queue[saved.name] || []).push(saved);
    for (const field of form.elements) {
      if (!keeps(field) || !queue[field.name]) continue;
      if (field.type === "checkbox" || field.type === "radio") {
        const match = queue[field.name].find((saved) => saved.value === field.value);
        if (match) field.checked = match.checked;
        continue;
      }
      const saved = queue[field.name].shift();
      if (!saved) continue;
      if (field.type === "select-multiple") {
        for (const option of field.options) option.selected = saved.values.includes(option.value);
      } else {
        field.value = saved.value;
      }
    }
  }

  function tell(form, saved) {
    const notice = document.createElement("p");
    notice.className = "notice";
    notice.id = "form-kept";
    notice.setAttribute("role", "status");
    notice.tabIndex = -1;
    // A form with nothing to type (a removal's confirmation) is only said not to have been sent.
    let text = saved.fields.length
      ? "What you typed is back. Nothing was changed yet: check it, then select "
      : "Nothing was changed yet: select ";
    text += saved.button ? "\u201c" + saved.button + "\u201d" : "the button";
    text += " again.";
    if (saved.hadFile) text += " Choose the file again too.";
    notice.textContent = text;
    form.parentNode.insertBefore(notice, form);
    notice.focus();
  }

  // A form that changes something is sent once: a double click on Invite sent two invites,
  // and the second link replaced the one the first email had just delivered. A second submit
  // within a few seconds of the first is dropped (the first one's answer is on its way);
  // after that, or once the page comes back from the back-forward cache, it is sent again.
  let sentAt = new WeakMap();
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (event.defaultPrevented || (form.method || "").toLowerCase() !== "post") return;
    const last = sentAt.get(form);
    if (last !== undefined && Date.now() - last < 5000) {
      event.preventDefault();
      return;
    }
    sentAt.set(form, Date.now());
  });
  window.addEventListener("pageshow", function (event) {
    if (event.persisted) sentAt = new WeakMap();
  });

  const store = storage();
  if (!store) return;

  const verifying = document.querySelector("[data-step-up]") !== null;

  document.addEventListener("submit", function (event) {
    const form = event.target;
    // "Verify it's you"'s own forms (a push, its Cancel) keep what waits for the verification.
    if (verifying || event.defaultPrevented) return;
    if ((form.method || "").toLowerCase() !== "post") return;
    const fields = typed(form);
    const button = event.submitter;
    const hadFile = Array.from(form.elements).some(
      (field) => field.type === "file" && field.files && field.files.length > 0,
    );
    const saved = {
      action: actionOf(form),
      fields: fields,
      button: button ? (button.tagName === "INPUT" ? button.value : button.textContent).trim() : "",
      hadFile: hadFile,
      verifying: false,
      at: Date.now(),
    };
    try {
      store.setItem(KEY, JSON.stringify(saved));
    } catch (error) {
      // full or refused: the form is not kept
    }
  });

  const saved = read(store);
  if (!saved) return;
  // "Verify it's you" (and its push's pages): the POST did not reach its page yet.
  if (verifying) {
    saved.verifying = true;
    store.setItem(KEY, JSON.stringify(saved));
    return;
  }
  store.removeItem(KEY);
  // Any other page after the POST: it went through (or the person went elsewhere).
  if (!saved.verifying) return;
  const form = Array.from(document.forms).find(
    (candidate) =>
      (candidate.method || "").toLowerCase() === "post" && actionOf(candidate) === saved.action,
  );
  if (!form) return;
  fill(form, saved.fields);
  tell(form, saved);
})();
