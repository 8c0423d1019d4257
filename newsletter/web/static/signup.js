// The signup form's proof of work ([signup] proof_of_work = true), in the ALTCHA scheme: find
// the number n, at most maxNumber, for which SHA-256(salt + n) is the challenge. It starts when
// the page loads, so it is usually done before the address is typed; the button waits for it.
(() => {
  "use strict";
  const hex = (buffer) =>
    Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");

  async function solve(challenge) {
    const encoder = new TextEncoder();
    for (let n = 0; n <= challenge.maxNumber; n += 1) {
      const digest = await crypto.subtle.digest("SHA-256", encoder.encode(challenge.salt + n));
      if (hex(digest) === challenge.challenge) return n;
    }
    return null;
  }

  for (const form of document.querySelectorAll("form[data-challenge]")) {
    const field = form.querySelector('input[name="altcha"]');
    const button = form.querySelector('button[type="submit"]');
    const challenge = JSON.parse(form.dataset.challenge);
    if (!field || !button || !window.crypto || !crypto.subtle) continue;
    const label = button.textContent;
    button.disabled = true;
    button.textContent = "One moment…";
    solve(challenge).then((number) => {
      if (number === null) return;
      field.value = btoa(JSON.stringify({
        algorithm: challenge.algorithm,
        challenge: challenge.challenge,
        number: number,
        salt: challenge.salt,
        signature: challenge.signature,
      }));
      button.disabled = false;
      button.textContent = label;
    });
  }
})();
