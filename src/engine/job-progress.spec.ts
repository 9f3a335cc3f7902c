import { parseFilesManifest, parseProgress } from './job-progress';

describe('parseProgress', () => {
  it('reads start, exit and end lines', () => {
    const text = 'start\t0\t2024-01-01T00:00:00.000Z\nexit\t0\t2024-01-01T00:00:01.000Z\t0\nstart\t1\t2024-01-01T00:00:02.000Z\nexit\t1\t2024-01-01T00:00:03.500Z\t5\nend\t2024-01-01T00:00:04.000Z\n';
    expect(parseProgress(text)).toEqual({
      executors: [
        { index: 0, startTime: '2024-01-01T00:00:00.000Z', endTime: '2024-01-01T00:00:01.000Z', exitCode: 0 },
        { index: 1, startTime: '2024-01-01T00:00:02.000Z', endTime: '2024-01-01T00:00:03.500Z', exitCode: 5 },
      ],
      endTime: '2024-01-01T00:00:04.000Z',
    });
  });

  it('leaves a running executor without exit and a running job without end', () => {
    expect(parseProgress('start\t0\tT0\nexit\t0\tT1\t0\nstart\t1\tT2\n')).toEqual({
      executors: [
        { index: 0, startTime: 'T0', endTime: 'T1', exitCode: 0 },
        { index: 1, startTime: 'T2' },
      ],
    });
  });

  it('ignores a half-written last line', () => {
    expect(parseProgress('start\t0\tT0\nexit\t0\tT1\t1')).toEqual({ executors: [{ index: 0, startTime: 'T0' }] });
    expect(parseProgress('start\t0\tT0\nexit\t0\tT1\t0\nen')).toEqual({ executors: [{ index: 0, startTime: 'T0', endTime: 'T1', exitCode: 0 }] });
    expect(parseProgress('sta')).toEqual({ executors: [] });
  });

  it('skips lines it does not understand', () => {
    expect(parseProgress('\nstart\tx\tT\nexit\t0\tT1\tnope\nbogus\t0\tT\nstart\t0\tT0\n')).toEqual({ executors: [{ index: 0, startTime: 'T0' }] });
  });
});

describe('parseFilesManifest', () => {
  it('reads sizes and paths, tabs and newlines in names included', () => {
    const manifest = Buffer.from('12\tout/a.txt\0' + '0\tout/with\ttab\nand newline\0' + '3\tout/é\0');
    expect(parseFilesManifest(manifest)).toEqual([
      { path: 'out/a.txt', size: 12 },
      { path: 'out/with\ttab\nand newline', size: 0 },
      { path: 'out/é', size: 3 },
    ]);
  });

  it('ignores an entry still being written and an empty manifest', () => {
    expect(parseFilesManifest('5\tout/x\0' + '7\tout/y')).toEqual([{ path: 'out/x', size: 5 }]);
    expect(parseFilesManifest('')).toEqual([]);
  });
});
