{#- Run by the browser when the page loads: a missing PNG gets a visible note, and the page
    records how many images it could show (data-images-ok / data-images on <html>), any
    script or resource error (data-errors) and how many pixels wider than the window it is
    (data-overflow), which tests/test_report_html.py reads back. -#}
window.__errors = [];
window.addEventListener('error', function (e) {
  window.__errors.push((e.target && e.target.src) || e.message || 'error');
}, true);
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  var ok = images.filter(function (img) { return img.complete && img.naturalWidth > 0; });
  images.forEach(function (img) {
    if (!(img.complete && img.naturalWidth > 0)) {
      var note = document.createElement('p');
      note.className = 'missing';
      note.textContent = 'image not found: ' + img.getAttribute('src');
      img.parentNode.insertBefore(note, img.nextSibling);
    }
  });
  var root = document.documentElement;
  root.setAttribute('data-images', String(images.length));
  root.setAttribute('data-images-ok', String(ok.length));
  root.setAttribute('data-errors', String(window.__errors.length));
  root.setAttribute('data-overflow', String(Math.max(0, root.scrollWidth - root.clientWidth)));
});
