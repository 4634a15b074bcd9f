// Bulk cancel preview: the counts follow the ticked batches, the typed confirmation is asked only
// above data-typed-above of them, and "select all" ticks or unticks them all. The server checks
// the selection and the typed number again; this only keeps the page's words true.
(function () {
  function setUp() {
    var form = document.getElementById("bulk-form");
    if (!form) return;
    var above = parseInt(form.dataset.typedAbove || "3", 10);
    var boxes = Array.prototype.slice.call(form.querySelectorAll("input[type=checkbox][name=batch]"));
    var all = document.getElementById("bulk-all");
    var typed = document.getElementById("typed-confirmation");
    var submit = form.querySelector(".bulk-submit");

    function update() {
      var n = boxes.filter(function (box) { return box.checked; }).length;
      form.querySelectorAll(".selected-count").forEach(function (el) { el.textContent = String(n); });
      form.querySelectorAll(".selected-plural").forEach(function (el) { el.textContent = n === 1 ? "" : "es"; });
      boxes.forEach(function (box) {
        var row = box.closest("tr");
        if (row) row.classList.toggle("is-left-out", !box.checked);
      });
      if (typed) typed.hidden = n <= above;
      if (submit) submit.disabled = n === 0;
      if (all) {
        all.checked = n === boxes.length;
        all.indeterminate = n > 0 && n < boxes.length;
      }
    }

    boxes.forEach(function (box) { box.addEventListener("change", update); });
    if (all) {
      all.hidden = false;
      all.addEventListener("change", function () {
        boxes.forEach(function (box) { box.checked = all.checked; });
        update();
      });
    }
    update();
  }
  document.addEventListener("DOMContentLoaded", setUp);
})();
