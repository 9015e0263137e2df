#!/usr/bin/env node
'use strict';
// Label up to N items of a project, answering with a label chosen from each item's input,
// then print what happened as JSON: node cli.js ADDRESS PROJECT WORKER N
//   arrays: the label is "even"/"odd" by the first value; text: the text's length parity.

const { QueueClient } = require('./client');

async function main() {
  const [address, project, worker, n = '10'] = process.argv.slice(2);
  if (!address || !project || !worker) {
    console.error('usage: cli.js ADDRESS PROJECT WORKER [N]');
    process.exit(2);
  }
  const client = new QueueClient(address);
  const labelled = [];
  try {
    for (let i = 0; i < Number(n); i += 1) {
      const items = await client.pop(project, worker, 1);
      if (items.length === 0) break;
      const item = items[0];
      const first = item.input && item.input.values ? Number(item.input.values[0]) : String(item.input).length;
      const label = first % 2 === 0 ? 'even' : 'odd';
      const result = await client.submit(project, item, label, worker);
      labelled.push({ id: item.id, label, annotationId: result.annotationId, dtype: item.input.dtype });
    }
    let refused = null;
    try {
      await client.pop(project, '', 1);
    } catch (err) {
      refused = { code: err.code, details: err.details };
    }
    const progress = await client.progress(project);
    console.log(JSON.stringify({ labelled, progress: { total: Number(progress.total), labelled: Number(progress.labelled) }, refused }));
  } finally {
    client.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
