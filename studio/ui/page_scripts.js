() => {
  // Installed once per page (demo.load). Ctrl/⌘+Enter in a prompt box generates; the Regions editor paints on the
  // first try: its brush is active when it is shown, and picking a palette colour closes the pop-up and keeps the
  // brush (a stroke that starts while the pop-up is open closes it and paints).
  if (window.__fluxStudioScripts) return;
  window.__fluxStudioScripts = true;

  document.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    if (!event.target.closest("#prompt, #negative_prompt, #prompt_2")) return;
    event.preventDefault();
    const button = document.querySelector("#generate");
    if (button && !button.disabled) button.click();
  });

  const EDITOR = "#region_editor";
  const brushButton = (editor) => editor.querySelector('.toolbar-wrap button[aria-label="Brush"]');
  const popupOpen = (editor) => !!editor.querySelector(".toolbar-wrap menu.swatch, .toolbar-wrap input[type=range]");
  // the editor's pop-ups close on a mousedown outside them (a document listener in the capture phase)
  const closePopup = () => document.body.dispatchEvent(new MouseEvent("mousedown", {bubbles: true}));
  const watched = new WeakSet();

  // the first time the editor is shown, pick the brush once its canvas exists (it starts on the Image tool)
  const brushWhenShown = (editor) => {
    if (watched.has(editor)) return;
    watched.add(editor);
    const observer = new IntersectionObserver((entries) => {
      if (!entries.some((entry) => entry.isIntersecting)) return;
      observer.disconnect();
      let tries = 0;
      const tick = () => {
        const button = brushButton(editor);
        if (button && editor.querySelector("canvas")) setTimeout(() => brushButton(editor)?.click(), 150);
        else if (++tries < 50) setTimeout(tick, 100);
      };
      tick();
    });
    observer.observe(editor);
  };
  const findEditors = () => document.querySelectorAll(EDITOR).forEach(brushWhenShown);
  new MutationObserver(findEditors).observe(document.body, {childList: true, subtree: true});
  findEditors();

  document.addEventListener("click", (event) => {
    const editor = event.target.closest(EDITOR);
    if (editor && event.target.closest("menu.swatch button.color")) setTimeout(closePopup, 0);
  }, true);  // capture: the editor's own handlers stop the click from bubbling
  document.addEventListener("pointerdown", (event) => {
    const editor = event.target.closest(EDITOR);
    if (editor && event.target.tagName === "CANVAS" && popupOpen(editor)) closePopup();
  }, true);
}
