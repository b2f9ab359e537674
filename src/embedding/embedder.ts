/** Turns sentences into unit-length vectors (cosine distance = 1 - dot product). */
export interface Embedder {
  readonly model: string;
  readonly dimensions: number;
  embed(texts: string[]): Promise<Float32Array[]>;
  close(): Promise<void>;
}
