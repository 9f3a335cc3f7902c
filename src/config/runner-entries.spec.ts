import { parseRunnerEntries } from './runner-entries';

describe('compute.pulsar.runners entries', () => {
  it('reads name=URL with a token, a manager and a runtime', () => {
    expect(parseRunnerEntries(['hpc1=http://s3cret@127.0.0.1:8913/', 'cloud=https://t%40k@pulsar.example.org:443/managers/big?runtime=process'])).toEqual([
      { name: 'hpc1', transport: 'rest', baseUrl: 'http://127.0.0.1:8913', manager: '_default_', token: 's3cret', runtime: 'docker' },
      { name: 'cloud', transport: 'rest', baseUrl: 'https://pulsar.example.org/managers/big', manager: 'big', token: 't@k', runtime: 'process' },
    ]);
  });

  it('reads amqp entries: the broker with its credentials, the manager, runtime and staging', () => {
    expect(parseRunnerEntries(['centre1=amqp://tes:p%40ss@rabbit.example.org:5672/hpc?manager=centre1&runtime=process&staging=direct&heartbeat=30'])).toEqual([
      {
        name: 'centre1',
        transport: 'amqp',
        baseUrl: 'amqp://tes:p%40ss@rabbit.example.org:5672/hpc?heartbeat=30',
        brokerLabel: 'amqp://rabbit.example.org:5672/hpc',
        manager: 'centre1',
        runtime: 'process',
        staging: 'direct',
      },
    ]);
    expect(parseRunnerEntries(['d=amqp://127.0.0.1/'])[0]).toMatchObject({ manager: '_default_', runtime: 'docker', staging: 'relay', brokerLabel: 'amqp://127.0.0.1/' });
  });

  it.each([
    ['a=amqp://u:secretpw@127.0.0.1/?manager=bad/name', /manager "bad\/name"/],
    ['a=amqp://u:secretpw@127.0.0.1/?staging=sideways', /staging "sideways"/],
    ['a=amqp://u:secretpw@127.0.0.1/?colour=blue', /unknown parameter "colour"/],
  ])('refuses the amqp entry %s without showing its password', (entry, problem) => {
    expect(() => parseRunnerEntries([entry])).toThrow(problem);
    expect(() => parseRunnerEntries([entry])).not.toThrow(/secretpw/);
  });

  it('keeps a runner without a token tokenless', () => {
    expect(parseRunnerEntries(['a=http://127.0.0.1:8913'])[0].token).toBeUndefined();
  });

  it.each([
    ['hpc1', /is not name=value/],
    ['bad name=http://127.0.0.1:1/', /not a runner name/],
    ['a=ftp://127.0.0.1/', /scheme "ftp"/],
    ['a=http://user:pass@127.0.0.1:1/', /private_token alone/],
    ['a=http://127.0.0.1:1/some/path', /only \/managers\/MANAGER/],
    ['a=http://127.0.0.1:1/?runtime=lxc', /runtime "lxc"/],
    ['a=http://127.0.0.1:1/?colour=blue', /unknown parameter "colour"/],
    ['a=not a url', /is not name=URL/],
  ])('refuses %s, naming the problem', (entry, problem) => {
    expect(() => parseRunnerEntries([entry])).toThrow(problem);
  });

  it('refuses a name given twice and never repeats a token in its messages', () => {
    expect(() => parseRunnerEntries(['a=http://tok1@127.0.0.1:1/', 'A=http://tok2@127.0.0.1:2/'])).toThrow(/"A" is given twice/);
    try {
      parseRunnerEntries(['a=http://tok9:secret9@127.0.0.1:1/']);
    } catch (err) {
      expect((err as Error).message).not.toMatch(/tok9|secret9/);
    }
    expect.assertions(2);
  });
});
