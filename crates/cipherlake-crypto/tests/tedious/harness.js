// Differential-test harness: encrypts and decrypts Always Encrypted cells with tedious' own
// implementation (lib/always-encrypted) and builds plaintexts with tedious' TDS data-type
// encoders. Reads a JSON array of requests on stdin, writes a JSON array of results.
//
// Requests:
//   {op: "encrypt", cek, mode: "deterministic"|"randomized", plaintext}   -> {cell}
//   {op: "decrypt", cek, mode, cell}                                       -> {plaintext}
//   {op: "encrypt_typed", cek, mode, tedious: {type, value, scale?, precision?, codepage?, sub_ms?}}
//                                                                          -> {plaintext, cell}
// All byte strings are lowercase hex. Errors come back as {error}.
'use strict';

const path = require('path');
const dir = process.env.TEDIOUS_DIR;
if (!dir) {
  throw new Error('TEDIOUS_DIR is not set');
}
const lib = path.join(dir, 'package', 'lib');
const { AeadAes256CbcHmac256Algorithm, algorithmName } = require(path.join(lib, 'always-encrypted', 'aead-aes-256-cbc-hmac-algorithm.js'));
const { AeadAes256CbcHmac256EncryptionKey } = require(path.join(lib, 'always-encrypted', 'aead-aes-256-cbc-hmac-encryption-key.js'));
const { SQLServerEncryptionType } = require(path.join(lib, 'always-encrypted', 'types.js'));

const TYPES = {
  BigInt: 'bigint', Float: 'float', Real: 'real', Money: 'money', Decimal: 'decimal',
  UniqueIdentifier: 'uniqueidentifier', Date: 'date', Time: 'time', DateTime: 'datetime',
  SmallDateTime: 'smalldatetime', DateTime2: 'datetime2', DateTimeOffset: 'datetimeoffset',
  NVarChar: 'nvarchar', VarChar: 'varchar', VarBinary: 'varbinary',
};

function algorithm(cekHex, mode) {
  const key = new AeadAes256CbcHmac256EncryptionKey(Buffer.from(cekHex, 'hex'), algorithmName);
  const type = mode === 'deterministic' ? SQLServerEncryptionType.Deterministic : SQLServerEncryptionType.Randomized;
  return new AeadAes256CbcHmac256Algorithm(key, type);
}

function tdsBytes(spec) {
  const file = TYPES[spec.type];
  if (!file) {
    throw new Error(`unsupported tedious type ${spec.type}`);
  }
  const dataType = require(path.join(lib, 'data-types', `${file}.js`));
  let value;
  switch (spec.type) {
    case 'BigInt':
    case 'UniqueIdentifier':
    case 'NVarChar':
      value = spec.value;
      break;
    case 'Float':
    case 'Real':
    case 'Money':
    case 'Decimal':
      value = Number(spec.value);
      break;
    case 'VarBinary':
      value = Buffer.from(spec.value, 'hex');
      break;
    case 'VarChar':
      value = dataType.validate(spec.value, { codepage: spec.codepage });
      break;
    default: // temporal types: an ISO 8601 UTC instant with millisecond precision
      value = new Date(spec.value);
      if (Number.isNaN(value.getTime())) {
        throw new Error(`invalid date ${spec.value}`);
      }
      if (spec.sub_ms) {
        value.nanosecondDelta = Number(spec.sub_ms);
      }
  }
  const parameter = { value, scale: spec.scale, precision: spec.precision, length: 100 };
  return Buffer.concat([...dataType.generateParameterData(parameter, { useUTC: true })]);
}

function handle(req) {
  const alg = algorithm(req.cek, req.mode);
  switch (req.op) {
    case 'encrypt':
      return { cell: alg.encryptData(Buffer.from(req.plaintext, 'hex')).toString('hex') };
    case 'decrypt':
      return { plaintext: alg.decryptData(Buffer.from(req.cell, 'hex')).toString('hex') };
    case 'encrypt_typed': {
      const plaintext = tdsBytes(req.tedious);
      return { plaintext: plaintext.toString('hex'), cell: alg.encryptData(plaintext).toString('hex') };
    }
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => { input += chunk; });
process.stdin.on('end', () => {
  const results = JSON.parse(input).map((req) => {
    try {
      return handle(req);
    } catch (e) {
      return { error: String(e && e.message ? e.message : e) };
    }
  });
  process.stdout.write(JSON.stringify(results));
});
