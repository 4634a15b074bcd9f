// Timestamps: the server writes relative text and an absolute UTC title; show the title in the
// viewer's own time zone, also for rows that htmx swaps in later.
(function () {
  function localize(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) el.title = when.toLocaleString(undefined, { timeZoneName: "short" });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localize(document); });
  document.addEventListener("htmx:afterSettle", function (event) { localize(event.target); });
})();

// Failed htmx requests are never silent. htmx swaps nothing on a 4xx/5xx answer or a network
// error, so the row (and its Cancel button) stays as it was; this says why, inside the row for a
// row's own requests, else in the page's notice region. A not-signed-in request is answered 401
// with HX-Redirect, which htmx follows before any of this (the whole page goes to sign in).
(function () {
  var MAX_SERVER_TEXT = 500;
  // A failed action's message (a cancel's) outlives the row's next polls, which swap in a new row:
  // by row id, until that row's next action.
  var sticky = {};

  function serverText(xhr) {
    var type = (xhr && xhr.getResponseHeader("Content-Type")) || "";
    if (type.indexOf("text/plain") !== 0) return "";
    var text = (xhr.responseText || "").trim();
    return text.length > MAX_SERVER_TEXT ? text.slice(0, MAX_SERVER_TEXT) + "…" : text;
  }

  function isAction(detail) {
    var verb = detail.requestConfig && detail.requestConfig.verb;
    return !!verb && verb.toLowerCase() !== "get";
  }

  function retryWords(detail) {
    return isAction(detail) ? "Try again." : "It will retry.";
  }

  function messageFor(detail) {
    var xhr = detail.xhr;
    var status = xhr ? xhr.status : 0;
    var text = serverText(xhr);
    if (status === 401) return text || "You are not signed in any more. Reload the page to sign in.";
    if (status === 403) {
      return text || "The dashboard refused this (your session changed — signed in again in another tab?). Reload the page and try again.";
    }
    if (status === 429) return text || "Too many requests: wait a moment, then " + retryWords(detail).toLowerCase();
    if (status >= 500) return "The dashboard failed to answer (HTTP " + status + "). " + retryWords(detail);
    return text || "The dashboard could not do this (HTTP " + status + "). Reload the page and try again.";
  }

  function networkMessage(detail) {
    return isAction(detail)
      ? "Could not reach the dashboard. Check your connection and try again."
      : "Could not reach the dashboard. Check your connection; the row will retry.";
  }

  function rowOf(elt) {
    return elt && elt.closest ? elt.closest("tr.batch-row") : null;
  }

  function rowErrorBox(row) {
    var box = row.querySelector(".row-error");
    if (!box) {
      box = document.createElement("div");
      box.className = "row-error";
      box.setAttribute("role", "status");
      var cells = row.querySelectorAll("td");
      (cells[2] || cells[cells.length - 1] || row).appendChild(box);
    }
    return box;
  }

  function pageNotice() {
    return document.getElementById("page-notice");
  }

  function show(detail, text) {
    var elt = detail.elt;
    var row = rowOf(elt);
    var action = isAction(detail);
    if (row) {
      rowErrorBox(row).textContent = "⚠ " + text;
      if (action && row.id) sticky[row.id] = text;
      return;
    }
    var notice = pageNotice();
    if (!notice) return;
    notice.textContent = text;
    notice.dataset.sticky = action ? "true" : "";
  }

  document.addEventListener("htmx:responseError", function (event) {
    show(event.detail, messageFor(event.detail));
  });
  document.addEventListener("htmx:sendError", function (event) {
    show(event.detail, networkMessage(event.detail));
  });
  document.addEventListener("htmx:timeout", function (event) {
    show(event.detail, networkMessage(event.detail));
  });

  // A new action clears the last one's message; a poll that answers clears a poll's.
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (!isAction(event.detail)) return;
    var row = rowOf(event.detail.elt);
    if (row) {
      delete sticky[row.id];
      var box = row.querySelector(".row-error");
      if (box) box.textContent = "";
    }
    var notice = pageNotice();
    if (notice) { notice.textContent = ""; notice.dataset.sticky = ""; }
  });
  document.addEventListener("htmx:afterRequest", function (event) {
    var notice = pageNotice();
    if (event.detail.successful && notice && notice.textContent && notice.dataset.sticky !== "true") {
      notice.textContent = "";
    }
  });
  // A row swapped in by its poll keeps a failed action's message.
  document.addEventListener("htmx:load", function (event) {
    var row = event.target;
    if (row && row.matches && row.matches("tr.batch-row") && sticky[row.id]) {
      rowErrorBox(row).textContent = "⚠ " + sticky[row.id];
    }
  });
})();
