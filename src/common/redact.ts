// Secrets never reach a log, a task view or an error message: URLs lose their userinfo and their
// credential-bearing query parameters before they are printed.

// Query parameters that carry a credential: signed-URL signatures (AWS, Google, Azure SAS `sig`), OAuth tokens
// and client secrets, API keys. A bare `key` counts: it is how Google and many APIs pass an API key; redaction only
// changes what is shown, never the URL a transfer uses.
const SECRET_QUERY_NAMES = [
  'x-amz-signature', 'x-amz-credential', 'x-amz-security-token',
  'x-goog-signature', 'x-goog-credential', 'x-goog-security-token',
  'signature', 'sig', 'token', 'access_token', 'refresh_token', 'id_token', 'private_token', 'client_secret',
  'password', 'passwd', 'secret', 'key', 'apikey', 'api_key', 'api-key', 'x-api-key',
];
const SECRET_QUERY_KEYS = new RegExp(`^(${SECRET_QUERY_NAMES.join('|')})$`, 'i');
/** name=value of a secret parameter inside free text (a URL quoted in an error message). */
const SECRET_QUERY_IN_TEXT = new RegExp(`([?&;](?:${SECRET_QUERY_NAMES.join('|')})=)[^&\\s#"'<>]*`, 'gi');

export function redactUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return redactText(raw.replace(/\/\/[^/@\s]*@/g, '//***@'));
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

/** Hides userinfo and secret query parameters of every URL inside free text, and quoted Authorization credentials. */
export function redactText(text: string): string {
  return text
    .replace(/([a-z][a-z0-9+.-]*:\/\/)[^/@\s]*@/gi, '$1***@')
    .replace(RELAY_KEY, '$1***')
    .replace(SECRET_QUERY_IN_TEXT, '$1***')
    .replace(AUTHORIZATION_CREDENTIALS, '$1 ***');
}

/** An error's message with credentials removed, for logs and system_logs. */
export function errorMessage(err: unknown): string {
  return redactText(err instanceof Error ? err.message : String(err));
}
