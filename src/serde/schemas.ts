/**
 * Full names of the top-level Avro records in schemas/, one per .avsc file. A new schema file needs its
 * name here too: test/unit/serde/records.test.ts checks this list against the generated RecordTypes.
 */
export const SCHEMA_NAMES = ['magpie.Instruction', 'magpie.Conversation', 'magpie.DeadLetter', 'magpie.Rejected', 'magpie.IndexEntry', 'magpie.PreferencePair', 'magpie.SourceProgress'] as const;
export type SchemaName = (typeof SCHEMA_NAMES)[number];
