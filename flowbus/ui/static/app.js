// Client-side only: countdowns and list rows. Data arrives pushed (SSE), never polled.
(function () {
  "use strict";

  function left(ms) {
    var s = Math.round((ms - Date.now()) / 1000);
    if (s <= 0) return "expired";
    if (s < 90) return "in " + s + " s";
    if (s < 5400) return "in " + Math.round(s / 60) + " min";
    return "in " + (s / 3600).toFixed(1) + " h";
  }

  function tick() {
    document.querySelectorAll("[data-deadline]").forEach(function (el) {
      var ms = parseInt(el.getAttribute("data-deadline"), 10);
      if (!isNaN(ms)) el.textContent = left(ms);
    });
  }

  document.addEventListener("click", function (event) {
    var add = event.target.closest("[data-add-row]");
    if (add) {
      var list = add.closest("fieldset.list");
      var rows = list.querySelector(":scope > .rows");
      var template = list.querySelector(":scope > template");
      var next = rows.children.length;
      rows.querySelectorAll(":scope > .row").forEach(function (row) {
        var field = row.querySelector("[name]");
        if (!field) return;
        var rest = field.getAttribute("name").slice(add.getAttribute("data-add-row").length + 1);
        var index = parseInt(rest.split(".")[0], 10);
        if (!isNaN(index) && index >= next) next = index + 1;
      });
      var html = template.innerHTML.split("__index__").join(String(next));
      rows.insertAdjacentHTML("beforeend", html);
      htmx.process(rows.lastElementChild);
      return;
    }
    var remove = event.target.closest("[data-remove-row]");
    if (remove) remove.closest(".row").remove();
  });

  // A choice of input models: only the chosen one's fields are shown and sent (a disabled
  // fieldset's fields are not part of the form).
  document.addEventListener("change", function (event) {
    var choice = event.target.closest("[data-choice]");
    if (!choice) return;
    choice.form.querySelectorAll("[data-choice-fields]").forEach(function (set) {
      var chosen = set.getAttribute("data-choice-fields") === choice.value;
      set.disabled = !chosen;
      set.hidden = !chosen;
    });
  });

  document.addEventListener("htmx:afterSwap", tick);
  document.addEventListener("htmx:sseOpen", function () {
    document.body.classList.add("connected");
  });
  document.addEventListener("htmx:sseError", function () {
    document.body.classList.remove("connected");
  });
  tick();
  setInterval(tick, 1000);
})();
