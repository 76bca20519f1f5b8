// reghost admin: the little the pages do in the browser. Everything
// works without it; it adds keyboard shortcuts and moves focus to what a
// form's answer is about. No inline script: the CSP allows this file
// only.
(function () {
  "use strict";

  function typing(el) {
    if (!el) return false;
    var tag = el.tagName;
    return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || el.isContentEditable;
  }

  // "/" searches (the filter, or the address to explain); "n" starts a
  // new override. Not while typing, and not with modifiers, which belong
  // to the browser.
  document.addEventListener("keydown", function (e) {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
    if (e.key === "/") {
      var field = document.getElementById("q") || document.getElementById("ip");
      if (field) {
        e.preventDefault();
        field.focus();
        field.select();
      }
    } else if (e.key === "n") {
      var link = document.getElementById("new-override");
      if (link) {
        e.preventDefault();
        link.click();
      }
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    // After a preview, or a save that failed, put focus where the
    // answer is: the first field at fault, else the preview.
    var target = document.querySelector("[aria-invalid=true]") || document.querySelector("[data-focus]");
    if (target) target.focus();

    // The region belongs to cloud matches only.
    var kind = document.getElementById("match-kind");
    var region = document.getElementById("region-field");
    if (kind && region) {
      var sync = function () {
        var keep = kind.value === "cloud" || region.querySelector("[aria-invalid=true]") || document.getElementById("region").value !== "";
        region.hidden = !keep;
      };
      kind.addEventListener("change", sync);
      sync();
    }
  });
})();
