/** Full names of the Avro records in schemas/. */
export const SCHEMA_NAMES = ['magpie.Instruction', 'magpie.Conversation', 'magpie.DeadLetter', 'magpie.Rejected'] as const;
export type SchemaName = (typeof SCHEMA_NAMES)[number];
