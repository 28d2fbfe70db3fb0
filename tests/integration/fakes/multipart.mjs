// A strict multipart/form-data reader (RFC 2046 framing, RFC 7578 fields) for
// the fake OpenAI server. Unlike the lenient parsers servers usually run, it
// reports every deviation it sees as a violation string: bare LF instead of
// CRLF in the framing or the part headers, a missing closing delimiter,
// malformed header lines, a Content-Disposition that is not form-data or has
// no name, an over-long boundary. It still returns what it could read.

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

// The boundary from a Content-Type header, or null.
export function boundaryOf(contentType) {
  const m = /^\s*multipart\/form-data\s*;(.*)$/i.exec(contentType || '');
  if (!m) return null;
  const params = parseParams(m[1]);
  return params.boundary ?? null;
}

// `; a=b; c="d e"` → {a: 'b', c: 'd e'} (names lowercased; quoted strings unescaped).
export function parseParams(s) {
  const out = {};
  const re = /;?\s*([^=;\s]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))/g;
  let m;
  while ((m = re.exec(s))) {
    const name = m[1].toLowerCase();
    const value = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3].trim();
    if (!(name in out)) out[name] = value;
  }
  return out;
}

// → {parts: [{name, filename, contentType, headers, data}], fatal: string|null}
// `violations` receives every deviation; `fatal` is set when the body cannot
// be read as multipart at all (no boundary found, unterminated part).
export function parseMultipart(body, boundary, violations) {
  const parts = [];
  if (!boundary) return { parts, fatal: 'no boundary' };
  if (boundary.length > 70) violations.push(`multipart boundary is ${boundary.length} characters; RFC 2046 allows at most 70`);
  if (/\s$/.test(boundary)) violations.push('multipart boundary ends in white space (RFC 2046 forbids it)');
  const dash = Buffer.from(`--${boundary}`);
  const crlfDash = Buffer.from(`\r\n--${boundary}`);
  const lfDash = Buffer.from(`\n--${boundary}`);

  let pos = body.indexOf(dash);
  if (pos < 0) return { parts, fatal: `the boundary "${boundary}" from Content-Type does not occur in the body` };
  if (pos > 0 && !(pos >= 2 && body[pos - 2] === 0x0d && body[pos - 1] === 0x0a)) {
    violations.push('multipart: the first boundary is preceded by bytes that do not end in CRLF');
  }
  pos += dash.length;
  for (;;) {
    // After a delimiter: "--" closes the body, otherwise optional padding then CRLF.
    if (body[pos] === 0x2d && body[pos + 1] === 0x2d) return { parts, fatal: null };
    while (body[pos] === 0x20 || body[pos] === 0x09) pos++;
    if (body[pos] === 0x0d && body[pos + 1] === 0x0a) pos += 2;
    else if (body[pos] === 0x0a) { violations.push('multipart: bare LF after a boundary line (CRLF required)'); pos += 1; }
    else return { parts, fatal: 'multipart: a boundary line is not followed by CRLF or "--"' };

    let hdrEnd = body.indexOf('\r\n\r\n', pos, 'latin1');
    let sepLen = 4;
    if (body[pos] === 0x0d && body[pos + 1] === 0x0a) { hdrEnd = pos - 2; } // no headers at all
    const lfEnd = body.indexOf('\n\n', pos, 'latin1'); // only possible with a bare LF
    if (lfEnd >= 0 && (hdrEnd < 0 || lfEnd < hdrEnd)) {
      violations.push('multipart: part headers end with bare LF instead of CRLF CRLF');
      hdrEnd = lfEnd; sepLen = 2;
    }
    if (hdrEnd < 0) return { parts, fatal: 'multipart: a part has no end of headers (CRLF CRLF)' };
    const headerText = hdrEnd < pos ? '' : body.toString('latin1', pos, hdrEnd);
    const headers = {};
    const lines = headerText.length ? headerText.split('\r\n') : [];
    for (const line of lines) {
      if (/[\r\n]/.test(line)) violations.push(`multipart: part header line contains a bare CR or LF: ${JSON.stringify(line)}`);
      if (/^[ \t]/.test(line)) { violations.push(`multipart: folded (obsolete) part header line: ${JSON.stringify(line)}`); continue; }
      const m = /^([^:]*):[ \t]*(.*?)[ \t]*$/.exec(line.replace(/[\r\n]+$/, ''));
      if (!m || !TOKEN.test(m[1])) { violations.push(`multipart: malformed part header line: ${JSON.stringify(line)}`); continue; }
      const name = m[1].toLowerCase();
      if (name in headers) violations.push(`multipart: part header ${m[1]} given twice`);
      headers[name] = m[2];
    }
    const dataStart = hdrEnd + sepLen;
    let dataEnd = body.indexOf(crlfDash, dataStart);
    let delimLen = crlfDash.length;
    const lf = body.indexOf(lfDash, dataStart);
    if (lf >= 0 && (dataEnd < 0 || lf < dataEnd)) {
      violations.push('multipart: a part ends with bare LF before the boundary (CRLF required)');
      dataEnd = lf; delimLen = lfDash.length;
    }
    if (dataEnd < 0) return { parts, fatal: 'multipart: a part is not closed by a boundary (missing closing delimiter)' };
    const data = body.subarray(dataStart, dataEnd);
    const part = { headers, data, name: undefined, filename: undefined, contentType: headers['content-type'] };
    const cd = headers['content-disposition'];
    if (!cd) violations.push('multipart: a part has no Content-Disposition header');
    else {
      const type = cd.split(';')[0].trim().toLowerCase();
      if (type !== 'form-data') violations.push(`multipart: Content-Disposition type is "${type}", not form-data`);
      const p = parseParams(cd.slice(cd.indexOf(';') >= 0 ? cd.indexOf(';') : cd.length));
      part.name = p.name;
      part.filename = p.filename;
      if (p.name === undefined) violations.push(`multipart: Content-Disposition without a name: ${cd}`);
    }
    parts.push(part);
    pos = dataEnd + delimLen;
  }
}
