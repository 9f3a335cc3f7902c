// The test servers (HTTP, FTP) listen on 127.0.0.1, which tesp refuses for tasks by default; suites that stage
// from them allow private addresses explicitly. The SSRF suite starts tesp without these.
export const loopbackStorageOverrides = {
  'storage.http.allow_private_addresses': true,
  'storage.ftp.allow_private_addresses': true,
} as const;

export const loopbackStorageEnv: Readonly<Record<string, string>> = {
  TESP_STORAGE__HTTP__ALLOW_PRIVATE_ADDRESSES: 'true',
  TESP_STORAGE__FTP__ALLOW_PRIVATE_ADDRESSES: 'true',
};
