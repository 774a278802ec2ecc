// Keyboard shortcuts for the review queue. The page works without this file: every action is a plain form.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const items = Array.from(document.querySelectorAll(".review-item"));
  if (!items.length) return;
  let current = 0;
  const focus = (index) => {
    current = Math.max(0, Math.min(items.length - 1, index));
    items.forEach((item, i) => item.classList.toggle("active", i === current));
    items[current].focus();
  };
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName);
    if (typing || event.ctrlKey || event.metaKey || event.altKey) return;
    const item = items[current];
    if (event.key === "j") focus(current + 1);
    else if (event.key === "k") focus(current - 1);
    else if (event.key === "o") window.location.assign(item.dataset.href);
    else if (event.key === "a") item.querySelector("button[data-accept]")?.click();
    else if (/^[0-9]$/.test(event.key)) item.querySelector(`button[data-key="${event.key}"]`)?.click();
    else return;
    event.preventDefault();
  });
  focus(0);
});
