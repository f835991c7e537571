// The theme the reader chose with the toggle, applied before first paint: base.html loads
// this in <head>, not deferred, so a dark page never flashes light.
"use strict";
(function () {
  var t = localStorage.getItem("errands-theme");
  if (t) document.documentElement.dataset.theme = t;
})();
