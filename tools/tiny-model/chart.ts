/**
 * The training curve as a chart: a vega-lite spec compiled by vega-lite, rendered to SVG by vega
 * (headless, no canvas) and rasterised to PNG by resvg. Font: DejaVu Sans when installed, else
 * resvg's system fonts.
 */
import { existsSync } from 'node:fs';
import { Resvg } from '@resvg/resvg-js';
import * as vega from 'vega';
import * as vegaLite from 'vega-lite';

export interface CurvePoint {
  readonly step: number;
  readonly loss?: number;
  readonly heldout_loss?: number;
}

const FONT = '/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf';

export function curveSpec(
  train: readonly CurvePoint[],
  heldout: readonly CurvePoint[],
): vegaLite.TopLevelSpec {
  const values = [
    ...train.map((e) => ({ step: e.step, loss: e.loss, series: 'train (mean of 10 steps)' })),
    ...heldout.map((e) => ({ step: e.step, loss: e.heldout_loss, series: 'held-out (first windows)' })),
  ];
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: 'moreau-tiny: next-token cross-entropy',
    width: 560,
    height: 300,
    background: 'white',
    data: { values },
    mark: { type: 'line', point: false, strokeWidth: 1.6 },
    encoding: {
      x: { field: 'step', type: 'quantitative', title: 'optimizer step' },
      y: { field: 'loss', type: 'quantitative', title: 'loss (nats / token)', scale: { zero: false } },
      color: {
        field: 'series',
        type: 'nominal',
        title: null,
        legend: { orient: 'top-right', labelLimit: 400 },
      },
    },
    config: { font: 'DejaVu Sans' },
  };
}

export async function renderCurve(
  train: readonly CurvePoint[],
  heldout: readonly CurvePoint[],
): Promise<{ svg: string; png: Uint8Array }> {
  const compiled = vegaLite.compile(curveSpec(train, heldout)).spec;
  const view = new vega.View(vega.parse(compiled), { renderer: 'none' });
  const svg = await view.toSVG();
  view.finalize();
  const fonts = existsSync(FONT)
    ? { fontFiles: [FONT], loadSystemFonts: false, defaultFontFamily: 'DejaVu Sans' }
    : { loadSystemFonts: true };
  const png = new Resvg(svg, { fitTo: { mode: 'zoom', value: 2 }, font: fonts }).render().asPng();
  return { svg, png: new Uint8Array(png) };
}
