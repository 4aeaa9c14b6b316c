// The push's waiting page (a sign-in's, or "Verify it's you"'s): asks every two seconds
// whether Threshold Verify answered, and posts the "I approved it" form once it approved,
// or reloads to show why not.
(() => {
  "use strict";
  const page = document.getElementById("push");
  if (!page) return;
  const status = document.getElementById("push-status");
  const form = document.getElementById("push-finish");
  const stateUrl = page.dataset.stateUrl;
  const waitUrl = page.dataset.waitUrl;

  async function check() {
    let state = "pending";
    try {
      const response = await fetch(stateUrl, { credentials: "same-origin", cache: "no-store" });
      if (response.ok) state = (await response.json()).state;
    } catch (error) {
      state = "pending"; // a network blip: ask again
    }
    if (state === "approved") {
      status.textContent = page.dataset.approved;
      form.submit();
    } else if (state === "pending") {
      window.setTimeout(check, 2000);
    } else {
      window.location.assign(waitUrl);
    }
  }
  window.setTimeout(check, 2000);
})();
