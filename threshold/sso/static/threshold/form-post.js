// The form_post authorization response (threshold/sso/responses.py): sends the page's form,
// which POSTs the code (or the error) to the app, as soon as the page is read. Without
// JavaScript the person selects its Continue button instead.
(() => {
  "use strict";
  const form = document.getElementById("form-post");
  if (form) form.submit();
})();
