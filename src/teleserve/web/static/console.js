// Teleserve console: small keyboard helpers (no build step, no framework beyond the
// vendored htmx and Alpine.js).
(function () {
  "use strict";
  // "/" focuses the search box, as in many web applications, unless the user is typing.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target && target.closest && target.closest("input, textarea, select, [contenteditable]")) return;
    var box = document.querySelector("[data-slash-focus]");
    if (!box) return;
    event.preventDefault();
    box.focus();
    if (box.select) box.select();
  });
  // After htmx replaces a region, move focus to an element that asks for it (the code
  // field of the login form, an error message) so keyboard users land where they should.
  document.addEventListener("htmx:afterSwap", function (event) {
    var wanted = event.detail.target.querySelector("[data-focus-after-swap]");
    if (wanted) wanted.focus();
  });
})();
