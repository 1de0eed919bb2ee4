() => { let tries = 0; const pick = () => {
  const b = document.querySelector('#sketch button[aria-label=Brush]');
  if (b) { if (!b.classList.contains('highlight')) b.click(); } else if (tries++ < 50) setTimeout(pick, 200); };
  setTimeout(pick, 300);
  document.addEventListener('pointerdown', (e) => {   // drawing selects the "drawing" input, in the page
    if (!e.target.closest || !e.target.closest('#sketch canvas')) return;
    const r = document.querySelector('#source input[value=draw]');
    if (r && !r.checked) r.click(); }, true);
  document.addEventListener('keydown', (e) => {       // S: one step, Shift+S: five, R: reset to the proposal
    const t = e.target, tag = (t && t.tagName || '').toLowerCase();
    if (tag === 'input' || tag === 'textarea' || (t && t.isContentEditable)) return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const id = e.key === 's' ? 'step' : e.key === 'S' ? 'step5' : (e.key === 'r' || e.key === 'R') ? 'reset' : null;
    if (!id) return;
    e.preventDefault();
    document.querySelector('#' + id)?.click(); }); }
