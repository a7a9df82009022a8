/**
 * JSON Schemas of the two Kubernetes objects the base adds for operations, written from their API
 * definitions (policy/v1 PodDisruptionBudget, Kubernetes 1.27+; monitoring.coreos.com/v1 PodMonitor,
 * prometheus-operator 0.7x): every field of `spec` the API knows, with its type, and no other, so
 * a misspelt or misplaced field fails as it would be dropped (or refused) by the API server.
 */
const labelSelector = {
  type: 'object',
  additionalProperties: false,
  properties: {
    matchLabels: { type: 'object', additionalProperties: { type: 'string' } },
    matchExpressions: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['key', 'operator'],
        properties: {
          key: { type: 'string' },
          operator: { enum: ['In', 'NotIn', 'Exists', 'DoesNotExist'] },
          values: { type: 'array', items: { type: 'string' } },
        },
      },
    },
  },
};

const objectMeta = {
  type: 'object',
  required: ['name'],
  properties: {
    name: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 253 },
    namespace: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 63 },
    labels: { type: 'object', additionalProperties: { type: 'string', maxLength: 63 } },
    annotations: { type: 'object', additionalProperties: { type: 'string' } },
  },
};

const intOrPercent = {
  anyOf: [
    { type: 'integer', minimum: 0 },
    { type: 'string', pattern: '^\\d+%$' },
  ],
};

/** policy/v1 PodDisruptionBudget. */
export const PDB_SCHEMA = {
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'policy/v1' },
    kind: { const: 'PodDisruptionBudget' },
    metadata: objectMeta,
    spec: {
      type: 'object',
      additionalProperties: false,
      required: ['selector'],
      // Exactly one of the two budgets (the API refuses both).
      oneOf: [{ required: ['maxUnavailable'] }, { required: ['minAvailable'] }],
      properties: {
        maxUnavailable: intOrPercent,
        minAvailable: intOrPercent,
        selector: labelSelector,
        unhealthyPodEvictionPolicy: { enum: ['IfHealthyBudget', 'AlwaysAllow'] },
      },
    },
  },
};

const duration = { type: 'string', pattern: '^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$' };

/** monitoring.coreos.com/v1 PodMonitor (the fields of spec and of a podMetricsEndpoint this base may use). */
export const PODMONITOR_SCHEMA = {
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'monitoring.coreos.com/v1' },
    kind: { const: 'PodMonitor' },
    metadata: objectMeta,
    spec: {
      type: 'object',
      additionalProperties: false,
      required: ['selector'],
      properties: {
        selector: labelSelector,
        namespaceSelector: {
          type: 'object',
          properties: { any: { type: 'boolean' }, matchNames: { type: 'array', items: { type: 'string' } } },
          additionalProperties: false,
        },
        jobLabel: { type: 'string' },
        podTargetLabels: { type: 'array', items: { type: 'string' } },
        sampleLimit: { type: 'integer', minimum: 0 },
        targetLimit: { type: 'integer', minimum: 0 },
        attachMetadata: { type: 'object' },
        podMetricsEndpoints: {
          type: 'array',
          minItems: 1,
          items: {
            type: 'object',
            additionalProperties: false,
            properties: {
              port: { type: 'string' },
              portNumber: { type: 'integer' },
              targetPort: { anyOf: [{ type: 'integer' }, { type: 'string' }] },
              path: { type: 'string', pattern: '^/' },
              scheme: { enum: ['http', 'https', 'HTTP', 'HTTPS'] },
              interval: duration,
              scrapeTimeout: duration,
              honorLabels: { type: 'boolean' },
              honorTimestamps: { type: 'boolean' },
              params: { type: 'object' },
              authorization: { type: 'object' },
              basicAuth: { type: 'object' },
              bearerTokenSecret: { type: 'object' },
              tlsConfig: { type: 'object' },
              relabelings: { type: 'array' },
              metricRelabelings: { type: 'array' },
              enableHttp2: { type: 'boolean' },
              followRedirects: { type: 'boolean' },
              filterRunning: { type: 'boolean' },
              proxyUrl: { type: 'string' },
            },
          },
        },
      },
    },
  },
};
