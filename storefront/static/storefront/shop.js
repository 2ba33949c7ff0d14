// The shop's only shared script (served by the shop: the Content-Security-Policy allows scripts from 'self').
(function () {
  "use strict";
  const switcher = document.querySelector("#language-switcher select");
  if (switcher) {
    switcher.addEventListener("change", (event) => event.target.form.submit());
  }
  // Copy buttons: <button class="copy" data-copy="#element-id"> copies that element's text.
  document.querySelectorAll("button.copy[data-copy]").forEach((button) => {
    button.hidden = false;
    button.addEventListener("click", async () => {
      const source = document.querySelector(button.dataset.copy);
      if (!source) { return; }
      const text = source.textContent.trim();
      try {
        await navigator.clipboard.writeText(text);
      } catch (error) {  // no clipboard permission: select the key so the shopper can copy it
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges(); selection.addRange(range);
        return;
      }
      const label = button.textContent;
      button.textContent = button.dataset.copied || label;
      setTimeout(() => { button.textContent = label; }, 2000);
    });
  });
})();
