// Secrets never reach a log, a task view or an error message: URLs lose their userinfo and their
// credential-bearing query parameters before they are printed.

const SECRET_QUERY_KEYS = /^(x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|token|access_token|password|secret|key|apikey|api_key|private_token)$/i;

export function redactUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return raw.replace(/\/\/[^/@\s]*@/g, '//***@');
  }
  let changed = false;
  if (url.username || url.password) {
    url.username = '***';
    url.password = '';
    changed = true;
  }
  for (const key of [...url.searchParams.keys()]) {
    if (SECRET_QUERY_KEYS.test(key)) {
      url.searchParams.set(key, '***');
      changed = true;
    }
  }
  const pathname = url.pathname.replace(RELAY_KEY, '$1***');
  if (pathname !== url.pathname) {
    url.pathname = pathname;
    changed = true;
  }
  // URLs without secrets are returned exactly as given, so clients see their own URLs back.
  return changed ? url.toString() : raw;
}

/** The key segment of tesp's staging URLs (/tesp/relay/<task>/<attempt>/<key>/...). */
const RELAY_KEY = /(\/tesp\/relay\/[^/\s]+\/\d+\/)[^/\s?#]+/g;

/**
 * Credentials of an Authorization header quoted in free text ("Bearer eyJ...", "Basic YWxpY2U6..."): 8 or more token
 * characters with a digit or punctuation among them, so that prose ("Basic authentication") stays.
 */
const AUTHORIZATION_CREDENTIALS = /\b(Bearer|Basic)\s+(?=[A-Za-z0-9._~+/=-]*[0-9._~+/=-])[A-Za-z0-9._~+/=-]{8,}/gi;

/** Replaces every URL with userinfo inside free text (error messages from libraries), and quoted credentials. */
export function redactText(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, '$1***@').replace(RELAY_KEY, '$1***').replace(AUTHORIZATION_CREDENTIALS, '$1 ***');
}

/** An error's message with credentials removed, for logs and system_logs. */
export function errorMessage(err: unknown): string {
  return redactText(err instanceof Error ? err.message : String(err));
}
