() => { let tries = 0; const pick = () => {
  const b = document.querySelector('#sketch button[aria-label=Brush]');
  if (b) { if (!b.classList.contains('highlight')) b.click(); } else if (tries++ < 50) setTimeout(pick, 200); };
  setTimeout(pick, 300);
  document.addEventListener('pointerdown', (e) => {   // drawing selects the "drawing" input, in the page
    if (!e.target.closest || !e.target.closest('#sketch canvas')) return;
    const r = document.querySelector('#source input[value=draw]');
    if (r && !r.checked) r.click(); }, true);
  // S: one step, Shift+S: five, R: reset to the proposal, N: reveal (lesson mode). Also with a radio button, a
  // checkbox or the modality dropdown focused (captured before the dropdown's filter sees the letter); in a box
  // for text or numbers the letters are typed, and the status line says how to get the keys back.
  document.addEventListener('keydown', (e) => {
    const t = e.target, tag = (t && t.tagName || '').toLowerCase();
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const id = e.key === 's' ? 'step' : e.key === 'S' ? 'step5' : (e.key === 'r' || e.key === 'R') ? 'reset'
      : (e.key === 'n' || e.key === 'N') ? 'reveal'
      : (e.key === 'p' || e.key === 'P') ? 'pause' : null;
    if (!id) return;
    const choice = tag === 'input' && ['radio', 'checkbox'].includes((t.type || '').toLowerCase());
    const dropdown = t && t.closest && t.closest('#modality');
    if ((tag === 'input' || tag === 'textarea' || (t && t.isContentEditable)) && !choice && !dropdown) {
      const hint = document.querySelector('#key_hint_text');
      if (hint) hint.textContent = 'Keys are typed into the box that has the focus: click beside it to use S, R, N and P.';
      return; }
    e.preventDefault(); e.stopPropagation();
    document.querySelector('#' + id)?.click(); }, true);
  // the modalities' names beside the grid's rows: row m of every panel spans natural pixels 1 + 29 m .. + 28
  // (model.render.stage_strip); the picture is scaled to fit its box (object-fit: contain)
  const placeRows = () => {
    const img = document.querySelector('#grid img'), host = document.querySelector('#grid');
    const holder = document.querySelector('#row_names');
    if (!img || !host || !holder || !img.naturalHeight) return;
    let names = []; try { names = JSON.parse(holder.dataset.names); } catch (err) { return; }
    let box = document.querySelector('#row_labels');
    if (!box) {
      box = document.createElement('div'); box.id = 'row_labels';
      names.forEach((n, m) => { const d = document.createElement('div'); d.className = 'row_label';
        d.textContent = n; d.dataset.row = m; box.appendChild(d); });
      host.appendChild(box);
    }
    const r = img.getBoundingClientRect(), hr = host.getBoundingClientRect();
    const s = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
    const left = r.left + (r.width - img.naturalWidth * s) / 2 - hr.left;
    const top = r.top + (r.height - img.naturalHeight * s) / 2 - hr.top;
    [...box.children].forEach((d, m) => {
      d.style.top = (top + (1 + 29 * m + 14) * s) + 'px';
      d.style.width = Math.max(left - 6, 40) + 'px'; });
  };
  const watchGrid = () => {
    const img = document.querySelector('#grid img');
    if (!img) { setTimeout(watchGrid, 200); return; }
    new ResizeObserver(placeRows).observe(img);
    new MutationObserver(() => { const i = document.querySelector('#grid img');
      if (i && !i.dataset.rows) { i.dataset.rows = '1'; i.addEventListener('load', placeRows); new ResizeObserver(placeRows).observe(i); }
      placeRows(); }).observe(document.querySelector('#grid'), {subtree: true, childList: true, attributes: true});
    img.dataset.rows = '1'; img.addEventListener('load', placeRows); placeRows(); };
  watchGrid();
  window.addEventListener('resize', placeRows); }
