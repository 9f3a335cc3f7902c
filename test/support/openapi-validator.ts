// Checks responses against the schemas of the official TES OpenAPI file, with unknown fields forbidden
// (py-tes rejects any field outside the spec).
import Ajv, { ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { loadTesOpenApiDocument } from '../../src/api-docs/openapi-document';

// Schemas composed with allOf cannot forbid extra fields per branch; service-info is checked by key set instead.
const COMPOSED = new Set(['Service', 'ServiceType', 'tesServiceInfo', 'tesServiceType']);

function closeObjects(node: unknown): void {
  if (Array.isArray(node)) return node.forEach(closeObjects);
  if (!node || typeof node !== 'object') return;
  const schema = node as Record<string, unknown>;
  if (schema.properties && schema.additionalProperties === undefined) schema.additionalProperties = false;
  Object.values(schema).forEach(closeObjects);
}

let validators: Map<string, ValidateFunction> | undefined;

export function validatorFor(schemaName: string): ValidateFunction {
  if (!validators) {
    const document = loadTesOpenApiDocument();
    const schemas = document.components.schemas as Record<string, unknown>;
    for (const [name, schema] of Object.entries(schemas)) if (!COMPOSED.has(name)) closeObjects(schema);
    const ajv = new Ajv({ strict: false, allErrors: true });
    addFormats(ajv);
    ajv.addFormat('boolean', true); // the TES file writes `format: boolean` on booleans
    ajv.addSchema({ components: { schemas } }, 'tes');
    validators = new Map();
    for (const name of Object.keys(schemas)) validators.set(name, ajv.getSchema(`tes#/components/schemas/${name}`)!);
  }
  const validate = validators.get(schemaName);
  if (!validate) throw new Error(`no schema ${schemaName} in the TES OpenAPI file`);
  return validate;
}

/** Throws with ajv's errors unless `body` matches the named schema of the TES OpenAPI file. */
export function expectSchema(schemaName: string, body: unknown): void {
  const validate = validatorFor(schemaName);
  if (!validate(body)) {
    throw new Error(`response does not match ${schemaName}: ${JSON.stringify(validate.errors, null, 1)}\n${JSON.stringify(body).slice(0, 2000)}`);
  }
}
