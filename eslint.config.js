// Lint: typescript-eslint with type information (flat config). `npm run lint`.
// The rules that matter most here are the type-aware ones: promises that nobody awaits or that
// are passed where a void callback is expected (a floating promise hides a failed cleanup step),
// switches that miss a state, and `any` leaking out of JSON and child-process output.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** Only the composition root reads the process (docs/decisions.md, "Only the composition root touches the process"). */
const processRestriction = ['env', 'argv', 'exit', 'on', 'once'].map((property) => ({
  object: 'process',
  property,
  message: `process.${property} is read only in src/cli (the composition root); pass it in as config.`,
}));

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/', 'coverage/', 'src/policy/types.generated*.ts', 'src/policy/schema-precompiled.ts'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: {
          // Files no tsconfig includes (scripts that no test imports, the launcher): linted with default options.
          allowDefaultProject: [
            'eslint.config.js',
            'bin/*.js',
            'scripts/gen-policy.ts',
            'scripts/health-of-code.ts',
            'scripts/unit-user.ts',
          ],
        },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // node:test's test() and describe() return promises the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            {
              from: 'package',
              package: 'node:test',
              name: ['test', 'describe', 'it', 'suite', 'before', 'after', 'beforeEach', 'afterEach'],
            },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
      '@typescript-eslint/only-throw-error': 'error',
      // An abort rejects with the signal's reason, whatever its type: passing it on is the contract.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingAny: true, allowThrowingUnknown: true }],
      '@typescript-eslint/require-await': 'off',
      eqeqeq: ['error', 'always'],
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/cli/**', 'src/sim/**', 'src/container-hooks/main.ts'],
    rules: { 'no-restricted-properties': ['error', ...processRestriction] },
  },
  {
    // Tests assert on parsed JSON and fake servers' bodies: `any` there is the point, not a leak.
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
    },
  },
  {
    // Plain JavaScript runs on Node: its globals are defined (TypeScript checks them in .ts files).
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly' } },
  },
  {
    files: ['eslint.config.js'],
    extends: [tseslint.configs.disableTypeChecked],
  },
);
