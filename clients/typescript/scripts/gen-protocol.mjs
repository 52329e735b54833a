// Generates src/generated/openapi.ts from the server's OpenAPI document, so
// the client's HTTP and WebSocket message types cannot drift from what the
// server sends:
//
//   node scripts/gen-protocol.mjs OPENAPI_JSON OUT_TS
//
// Every schema of components.schemas becomes an exported type (objects with
// their property descriptions as doc comments, `oneOf` with a discriminator
// as a union tagged by `type`), every string enum also a `const` array of its
// values, and every discriminated union a `const` array of its tags: the
// client switches over those with exhaustiveness checks, so a message type
// the server adds fails `tsc` until the client handles it.
//
// Only the JSON Schema the document uses is understood: $ref, allOf, oneOf,
// enum, nullable, object/array/string/number/integer/boolean and
// additionalProperties. Anything else stops the build with a message naming
// the schema, rather than being typed loosely.
//
// 64-bit integers: the document declares `_seq` and the other 64-bit values
// as strings, and rows as objects of unknown values (BIGINT cells are JSON
// strings), so nothing here is ever a lossy JavaScript number. Integers the
// document declares as integers (row counts, batch numbers, expires_in) are
// `number`.

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

const [input, output] = process.argv.slice(2);
if (!input || !output) {
  console.error('usage: node scripts/gen-protocol.mjs OPENAPI_JSON OUT_TS');
  process.exit(2);
}
const doc = JSON.parse(readFileSync(input, 'utf8'));
const schemas = doc.components?.schemas;
if (!schemas || typeof schemas !== 'object') {
  console.error(`${input} has no components.schemas`);
  process.exit(1);
}

function fail(where, what) {
  throw new Error(`${input}: ${where}: ${what} is not supported by gen-protocol.mjs`);
}

const refName = (ref) => {
  const prefix = '#/components/schemas/';
  if (!ref.startsWith(prefix)) fail(ref, 'a $ref outside components.schemas');
  const name = ref.slice(prefix.length);
  if (!(name in schemas)) fail(ref, 'a $ref to a missing schema');
  return name;
};

const quote = (s) => JSON.stringify(s);
const propKey = (k) => (/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(k) ? k : quote(k));

function comment(text, indent) {
  if (!text) return '';
  const lines = String(text).replace(/\*\//g, '*\\/').split('\n');
  if (lines.length === 1) return `${indent}/** ${lines[0]} */\n`;
  return `${indent}/**\n${lines.map((l) => `${indent} * ${l}`.trimEnd()).join('\n')}\n${indent} */\n`;
}

// The TypeScript type of a schema; `indent` is that of the line it starts on.
function typeOf(schema, where, indent) {
  let type;
  if (schema.$ref) {
    type = refName(schema.$ref);
  } else if (schema.allOf) {
    type = schema.allOf.map((s, i) => typeOf(s, `${where}.allOf[${i}]`, indent)).join(' & ');
  } else if (schema.oneOf) {
    type = schema.oneOf.map((s, i) => typeOf(s, `${where}.oneOf[${i}]`, indent)).join(' | ');
  } else if (schema.enum) {
    if (!schema.enum.every((v) => typeof v === 'string')) fail(where, 'a non-string enum');
    type = schema.enum.map(quote).join(' | ');
  } else {
    switch (schema.type) {
      case 'string':
        type = 'string';
        break;
      case 'number':
      case 'integer':
        type = 'number';
        break;
      case 'boolean':
        type = 'boolean';
        break;
      case 'array':
        if (!schema.items) fail(where, 'an array without items');
        type = `Array<${typeOf(schema.items, `${where}.items`, indent)}>`;
        break;
      case 'object':
      case undefined:
        type = objectType(schema, where, indent);
        break;
      default:
        fail(where, `type ${schema.type}`);
    }
  }
  return schema.nullable ? `(${type}) | null` : type;
}

function objectType(schema, where, indent) {
  const props = schema.properties ?? {};
  const required = new Set(schema.required ?? []);
  const inner = `${indent}  `;
  const members = Object.entries(props).map(([name, prop]) => {
    const optional = required.has(name) ? '' : '?';
    return `${comment(prop.description, inner)}${inner}${propKey(name)}${optional}: ${typeOf(prop, `${where}.${name}`, inner)};`;
  });
  if (schema.additionalProperties !== undefined && schema.additionalProperties !== false) {
    const value =
      schema.additionalProperties === true || Object.keys(schema.additionalProperties).length === 0
        ? 'unknown'
        : typeOf(schema.additionalProperties, `${where}.additionalProperties`, inner);
    members.push(`${inner}[key: string]: ${value};`);
  }
  if (members.length === 0) return 'object';
  return `{\n${members.join('\n')}\n${indent}}`;
}

let out = `// Generated from ${doc.info?.title ?? 'the OpenAPI document'} ${doc.info?.version ?? ''} (openapi/openapi.json)
// by clients/typescript/scripts/gen-protocol.mjs. Do not edit: run \`npm run build\`.
/* eslint-disable */

`;

for (const [name, schema] of Object.entries(schemas)) {
  out += comment(schema.description ?? schema.title, '');
  out += `export type ${name} = ${typeOf(schema, name, '')};\n`;
  if (schema.enum) {
    out += `/** Every value of {@link ${name}}. */\n`;
    out += `export const ${name}Values = [${schema.enum.map(quote).join(', ')}] as const;\n`;
  }
  if (schema.oneOf && schema.discriminator) {
    const { propertyName, mapping } = schema.discriminator;
    if (!mapping) fail(name, 'a discriminator without mapping');
    const tags = Object.keys(mapping);
    out += `/** Every \`${propertyName}\` of {@link ${name}}. */\n`;
    out += `export const ${name}Types = [${tags.map(quote).join(', ')}] as const;\n`;
    out += `/** The member of {@link ${name}} with \`${propertyName}\` T. */\n`;
    out += `export type ${name}Of<T extends ${name}[${quote(propertyName)}]> = Extract<${name}, { ${propertyName}: T }>;\n`;
  }
  out += '\n';
}

mkdirSync(dirname(output), { recursive: true });
writeFileSync(output, out);
console.log(`${output}: ${Object.keys(schemas).length} types from ${input}`);
