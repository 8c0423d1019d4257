// HTML on stdin -> JSON on stdout: the (feature, client) pairs that caniemail.com's data says
// are unsupported or only partly supported, for every e-mail client it knows.
// Used by tests/mailquality.py; run it yourself with `node tests/node/caniemail.mjs < x.html`.
import { doIUseEmail } from "@jsx-email/doiuse-email";

// doiuse-email reports findings only as sentences; these are the two shapes it writes
// (DoIUseEmail.checkFeaturesSupport), and a third would be a new version to look at.
const UNSUPPORTED = /^`(.+)` is not supported by `([^`]+)`$/;
const PARTIAL = /^`(.+)` is only partially supported by `([^`]+)`$/;

function pairs(messages, shape) {
  const seen = new Map();
  for (const message of messages) {
    const found = shape.exec(message);
    if (!found) {
      throw new Error(`doiuse-email said something this script cannot read: ${message}`);
    }
    seen.set(`${found[1]}\u0000${found[2]}`, [found[1], found[2]]);
  }
  return [...seen.values()].sort();
}

const chunks = [];
for await (const chunk of process.stdin) {
  chunks.push(chunk);
}
const html = Buffer.concat(chunks).toString("utf8");
const result = doIUseEmail(html, { emailClients: ["*"] });
process.stdout.write(
  JSON.stringify({
    unsupported: pairs(result.errors ?? [], UNSUPPORTED),
    partial: pairs(result.warnings ?? [], PARTIAL),
  }) + "\n",
);
