// Shows the moments of the access history in the phone's own time zone.
(function () {
  "use strict";
  Array.prototype.forEach.call(document.querySelectorAll("ol.history time[datetime]"), function (node) {
    var when = new Date(node.getAttribute("datetime"));
    if (isNaN(when.getTime())) return;
    node.title = when.toISOString();
    node.textContent = when.toLocaleString([], { year: "numeric", month: "short", day: "numeric",
                                                hour: "2-digit", minute: "2-digit" });
  });
})();
