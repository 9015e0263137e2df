'use strict';
// A minimal labelgrid QueueService client for Node.js. The contract is loaded at run time
// straight from protos/ (no copy of it lives here), so it cannot drift from the server.

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTOS = path.resolve(__dirname, '..', '..', 'protos');

function loadQueueService() {
  const definition = protoLoader.loadSync(path.join(PROTOS, 'labelgrid/v1/queue.proto'), {
    includeDirs: [PROTOS],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).labelgrid.v1.QueueService;
}

// Decode an NDArray {dtype, shape, data}: little-endian, C order, numpy dtype strings.
const TYPED = {
  '|b1': Uint8Array, '|u1': Uint8Array, '|i1': Int8Array,
  '<u2': Uint16Array, '<i2': Int16Array, '<u4': Uint32Array, '<i4': Int32Array,
  '<u8': BigUint64Array, '<i8': BigInt64Array, '<f4': Float32Array, '<f8': Float64Array,
};

function decodeArray(nd) {
  const Type = TYPED[nd.dtype];
  if (!Type) throw new Error(`dtype ${nd.dtype} is not decoded by this client`);
  const bytes = Buffer.from(nd.data);
  const copy = new Uint8Array(bytes); // aligned copy
  return { dtype: nd.dtype, shape: nd.shape.map(Number), values: new Type(copy.buffer) };
}

function decodePayload(payload) {
  if (!payload) return null;
  switch (payload.kind) {
    case 'array': return decodeArray(payload.array);
    case 'text': return payload.text;
    case 'uri': return payload.uri;
    case 'json': return JSON.parse(payload.json);
    default: return null;
  }
}

class QueueClient {
  constructor(address, options = {}) {
    const QueueService = loadQueueService();
    this.stub = new QueueService(address, grpc.credentials.createInsecure());
    this.deadlineMs = options.deadlineMs || 30000;
  }

  call(method, request) {
    return new Promise((resolve, reject) => {
      const deadline = new Date(Date.now() + this.deadlineMs);
      this.stub[method](request, { deadline }, (err, reply) => (err ? reject(err) : resolve(reply)));
    });
  }

  async pop(project, workerId, n = 1) {
    const reply = await this.call('Pop', { project, worker_id: workerId, n });
    return reply.items.map((item) => ({
      id: Number(item.id),
      leaseToken: item.lease_token,
      input: decodePayload(item.input),
      // for a reviewer: what the other annotators said
      others: item.others.map((o) => ({ workerId: o.worker_id, labels: o.labels })),
    }));
  }

  async submit(project, item, labels, workerId) {
    const reply = await this.call('Submit', {
      project,
      item_id: item.id,
      lease_token: item.leaseToken,
      worker_id: workerId,
      labels: Array.isArray(labels) ? labels : [labels],
    });
    return { annotationId: Number(reply.annotation_id), duplicate: reply.duplicate };
  }

  async progress(project) {
    const reply = await this.call('GetProgress', { project });
    return reply.progress;
  }

  // Agreement between annotators (percent, Fleiss, Krippendorff; Cohen per pair) and
  // per-worker statistics; consensus is 'CONSENSUS_MAJORITY' or 'CONSENSUS_DAWID_SKENE'.
  async agreement(project, consensus = 'CONSENSUS_MAJORITY') {
    const reply = await this.call('GetAgreement', { project, consensus });
    return reply.agreement;
  }

  close() {
    this.stub.close();
  }
}

module.exports = { QueueClient, decodeArray, decodePayload };
