import { describe, expect, it } from 'vitest';
import { ReportAggregator, type ReportData } from '../../../src/report/aggregate.js';
import { escapeHtml, formatNumber } from '../../../src/report/charts.js';
import { embeddedJson, renderReport } from '../../../src/report/html.js';
import type { Conversation } from '../../../src/serde/records.generated.js';
import { makeConversation } from '../../support/records.js';

const HOSTILE = '</script><script>alert("x")</script><!-- & \u2028';

function report(records: Conversation[], title = 'Run <1>'): ReportData {
  const agg = new ReportAggregator({ topic: 'sink<&>', rejects: 'rejects' });
  for (const r of records) agg.add('magpie.Conversation', r);
  agg.addReject({ stage: 'filter', rule: HOSTILE, reason: HOSTILE, uuid: null, record_json: '{}', source_topic: null, source_partition: null, source_offset: null, rejected_at: 1_750_000_000_000 });
  return agg.result(title, 1_750_000_600_000);
}

/** The JSON embedded in the page, as a browser would read it. */
function embedded(html: string): unknown {
  const m = /<script type="application\/json" id="report-data">([\s\S]*?)<\/script>/.exec(html);
  if (!m) throw new Error('no report-data script');
  return JSON.parse(m[1]!);
}

describe('report page', () => {
  const records = [
    { ...makeConversation(1), task_category: HOSTILE, language: 'en', difficulty: 'easy', instruct_reward: 1, min_neighbor_distance: 0.5 },
    { ...makeConversation(2), task_category: 'Math', language: 'en', difficulty: 'hard', instruct_reward: 2, min_neighbor_distance: 0.25 },
  ];

  it('embeds the numbers as JSON that reads back exactly, whatever the labels hold', () => {
    const data = report(records);
    const html = renderReport(data);
    expect(embedded(html)).toEqual(data);
    // The hostile label never closes the JSON script or opens a tag in the page.
    expect(html.match(/<\/script>/g)).toHaveLength(1);
    expect(html).not.toContain('<script>alert');
    expect(html).toContain(escapeHtml('</script><script>alert("x")</script>'));
  });

  it('shows min_neighbor_distance per decoding setting and per system prompt', () => {
    const html = renderReport(report(records.map((r, i) => ({ ...r, gen_input_configs: { ...r.gen_input_configs, decoding_key: i === 0 ? 't1-p1' : 't1.2-p0.995', system_prompt_key: 'math' } }))));
    const table = (id: string) => new RegExp(`<figure data-chart="${id}"[\\s\\S]*?</figure>`).exec(html)?.[0] ?? '';
    expect(table('distance-by-decoding')).toMatch(/<td>t1-p1<\/td><td class="num">1<\/td><td class="num">0.5<\/td>/);
    expect(table('distance-by-decoding')).toContain('<td>t1.2-p0.995</td>');
    expect(table('distance-by-system-prompt')).toMatch(/<td>math<\/td><td class="num">2<\/td><td class="num">0.375<\/td>/);
  });

  it('is self-contained: no scripts to run, no external resources', () => {
    const html = renderReport(report(records));
    expect(html).not.toMatch(/\b(src|href|xlink:href)\s*=/i);
    expect(html).not.toMatch(/url\(|@import|<link|<iframe|<img/i);
    expect(html.match(/<script/g)).toEqual(['<script']);
  });

  it('draws a chart for every section, with exact counts in the marks', () => {
    const html = renderReport(report(records));
    for (const id of ['task-category', 'difficulty', 'input-quality', 'language', 'safety', 'tag-coverage', 'instruction-length', 'response-length', 'min-neighbor-distance', 'reward', 'throughput', 'reject-rules', 'dead-letters', 'tag-failures']) {
      expect(html).toContain(`data-chart="${id}"`);
    }
    expect(html).not.toContain('data-chart="preference-margin"');
    expect(html).toContain('<title>Math: 1 · 50.0%</title>');
    expect(html).toContain('<title>en: 2 · 100.0%</title>');
    expect(html.match(/<svg /g)!.length).toBeGreaterThanOrEqual(14);
    expect(html).toContain('<title>Run &#60;1&#62;</title>');
  });

  it('renders an empty topic with placeholders instead of charts', () => {
    const html = renderReport(new ReportAggregator({ topic: 'empty' }).result('Empty', 0));
    expect(html).toContain('no data');
    expect(embedded(html)).toMatchObject({ totals: { records: 0 } });
  });

  it('escapes JSON for a script element and formats numbers for people', () => {
    expect(embeddedJson({ a: '</script>&\u2028' })).toBe('{"a":"\\u003c/script\\u003e\\u0026\\u2028"}');
    expect(JSON.parse(embeddedJson({ a: '</script>&\u2028' }))).toEqual({ a: '</script>&\u2028' });
    expect([0, 1234567, 1234.5678, 0.123456, -0.5, -1234.5].map(formatNumber)).toEqual(['0', '1,234,567', '1,235', '0.1235', '-0.5', '-1,235']);
  });
});
