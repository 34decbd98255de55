// Fake AI providers (design channels.md sections 5.2-5.4 and 7), built on
// recorder.mjs: every request is recorded (multipart bodies parsed into
// record.multipart: [{name, filename, content_type, size, sha256, value}];
// JSON bodies into record.json) and scripts (POST /__fake/script) take
// precedence, so tests inject 429 + Retry-After, 500s, timeouts (delay_ms),
// resets (drop) and malformed answers (raw).  Unscripted, it answers as the
// providers do, after checking the request as they would:
//   POST /openai/v1/audio/transcriptions   Groq Whisper
//   POST /v1/audio/transcriptions          OpenAI Whisper (or a self-hosted compatible server)
//     Authorization: Bearer <key> (401 OpenAI error otherwise); multipart/form-data with a
//     "file" part whose filename has an audio extension, "model" among the provider's models
//     (400 / 404 model_not_found), optional response_format json|verbose_json|text; a file over
//     25 MB is 413.  Answers {"text"} or verbose_json {task, language, duration, text, segments}.
//   POST /v1beta/models/<model>:generateContent   Gemini
//     x-goog-api-key (403 PERMISSION_DENIED), JSON contents[0].parts with a text part and one
//     inline_data|inlineData {mime_type|mimeType, data} whose data is base64 (400
//     INVALID_ARGUMENT); answers candidates + usageMetadata + modelVersion.
//   LlamaParse: POST /api/v1/parsing/upload (Bearer, multipart "file") -> {"id","status":"PENDING"};
//     GET /api/v1/parsing/job/<id> -> the statuses of "job_statuses" in turn (default PENDING,
//     PENDING, SUCCESS; the last repeats); GET /api/v1/parsing/job/<id>/result/markdown ->
//     {"markdown", "job_metadata": {"job_pages", "credits_used"}} (404 for an unknown job, 400
//     before the job succeeded).
//   POST /v1/chat/completions              OpenAI chat completions (or a self-hosted compatible server)
//   POST /openai/v1/chat/completions       Groq chat completions
//     Bearer key as for Whisper (401); JSON body with "model" among the provider's chat models or
//     "chat_models" (404 model_not_found), "messages" a non-empty array of {role: system|user|assistant,
//     content: string} (400), an optional response_format {type: text|json_object|json_schema}; with
//     json_object the messages must say "json" somewhere, as OpenAI requires (400).  Answers
//     chat.completion {id, model, choices[0].message.content, usage}: the content is the next of
//     "chat_answers" (a queue; objects are sent as JSON text), else "chat_content".  429s, timeouts,
//     resets and malformed bodies: recorder scripts on the path, as for the other providers.
// Control (besides recorder's): POST /__fake/ai with any of {"keys": {"groq": [..], "openai": [..],
// "gemini": [..], "llamaparse": [..]}, "transcript", "language", "duration", "vision_text",
// "markdown", "pages", "job_statuses": [..], "chat_answers": [..], "chat_content", "chat_models": [..]}
// changes what it accepts and answers;
// GET /__fake/jobs lists the parsing jobs.
//
// In-process: const ai = await startAi({ keys: { groq: ['gsk_1'] } }); ai.url; await ai.close();
// Standalone: node ai.mjs --port 8100
import crypto from 'node:crypto';
import { startRecorder } from './recorder.mjs';

const AUDIO_EXT = /\.(ogg|oga|opus|mp3|mpga|mpeg|m4a|mp4|wav|webm|flac)$/;
const MODELS = {
  groq: ['whisper-large-v3-turbo', 'whisper-large-v3'],
  openai: ['whisper-1', 'gpt-4o-transcribe', 'gpt-4o-mini-transcribe'],
  gemini: ['gemini-2.5-flash', 'gemini-2.5-pro', 'gemini-2.0-flash'],
};
const CHAT_MODELS = {
  openai: ['gpt-4o-mini', 'gpt-4o', 'gpt-4.1-mini'],
  groq: ['llama-3.1-8b-instant', 'llama-3.3-70b-versatile'],
};

const openaiError = (status, message, type = 'invalid_request_error', code = null) =>
  ({ status, body: { error: { message, type, param: null, code } } });
const googleError = (status, message, s) => ({ status, body: { error: { code: status, message, status: s } } });

// multipart/form-data as the recorder received it
export function parseMultipart(contentType, body) {
  const m = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType ?? '');
  if (!m) return null;
  const boundary = Buffer.from(`--${m[1] ?? m[2]}`);
  const parts = [];
  let at = body.indexOf(boundary);
  while (at >= 0) {
    const start = at + boundary.length;
    if (body.subarray(start, start + 2).toString() === '--') break;
    const next = body.indexOf(boundary, start);
    if (next < 0) return null; // no closing boundary: malformed
    const chunk = body.subarray(start + 2, next - 2); // after CRLF, before CRLF
    const split = chunk.indexOf('\r\n\r\n');
    const head = chunk.subarray(0, split).toString('utf8');
    const data = chunk.subarray(split + 4);
    const disp = /content-disposition:\s*form-data;([^\r\n]*)/i.exec(head)?.[1] ?? '';
    const name = /\bname="([^"]*)"/.exec(disp)?.[1];
    const filename = /\bfilename="([^"]*)"/.exec(disp)?.[1];
    const ctype = /content-type:\s*([^\r\n]+)/i.exec(head)?.[1];
    parts.push({ name, filename, content_type: ctype, size: data.length,
                 sha256: crypto.createHash('sha256').update(data).digest('hex'),
                 value: filename === undefined ? data.toString('utf8') : undefined, data });
    at = next;
  }
  return parts;
}

export async function startAi({ port = 0, host = '127.0.0.1', keys = {}, onAnswer = null } = {}) {
  const state = {
    keys: { groq: [], openai: [], gemini: [], llamaparse: [], ...keys },
    transcript: 'Oi, tudo bem? Queria saber o preço do plano anual.',
    language: 'portuguese',
    duration: 4.2,
    vision_text: 'Texto: PROMOÇÃO 20% OFF\nDescrição: um cartaz amarelo com letras pretas.',
    markdown: '# Orçamento\n\n| Item | Valor |\n|---|---|\n| Plano anual | R$ 1.200 |',
    pages: 2,
    job_statuses: ['PENDING', 'PENDING', 'SUCCESS'],
    chat_answers: [],
    chat_content: { summary: 'O cliente pediu informações.', sentiment: { score: 0, label: 'neutral' }, language: 'pt',
                    topics: ['information'], next_best_action: 'Responder com os preços.' },
    chat_models: [],
  };
  const jobs = new Map(); // id -> {polls, statuses, file}

  const bearer = (rec) => /^Bearer (.+)$/.exec(rec.headers.authorization ?? '')?.[1];

  function transcription(provider, rec) {
    if (!state.keys[provider].includes(bearer(rec)))
      return openaiError(401, 'Invalid API Key', 'invalid_request_error', 'invalid_api_key');
    const parts = rec.multipart;
    if (!parts) return openaiError(400, 'Could not parse multipart form');
    const field = (n) => parts.find((p) => p.name === n);
    const file = field('file');
    if (!file || file.filename === undefined) return openaiError(400, "1 validation error: 'file' is required");
    if (!AUDIO_EXT.test(file.filename))
      return openaiError(400, `file must be one of the following types: [flac mp3 mp4 mpeg mpga m4a ogg opus wav webm]`);
    if (file.size > 25 * 1024 * 1024) return openaiError(413, 'Request Entity Too Large', 'invalid_request_error');
    const model = field('model')?.value;
    if (!model) return openaiError(400, "1 validation error: 'model' is required");
    if (!MODELS[provider].includes(model))
      return openaiError(404, `The model \`${model}\` does not exist or you do not have access to it.`, 'invalid_request_error', 'model_not_found');
    const format = field('response_format')?.value ?? 'json';
    if (!['json', 'verbose_json', 'text'].includes(format)) return openaiError(400, `response_format ${format} is not supported`);
    if (format === 'text') return { status: 200, headers: { 'Content-Type': 'text/plain' }, raw: state.transcript };
    if (format === 'json') return { status: 200, body: { text: state.transcript } };
    return { status: 200, body: {
      task: 'transcribe', language: state.language, duration: state.duration, text: state.transcript,
      segments: [{ id: 0, seek: 0, start: 0.0, end: state.duration, text: state.transcript, tokens: [50365, 2],
                   temperature: 0.0, avg_logprob: -0.21, compression_ratio: 1.1, no_speech_prob: 0.01 }],
      x_groq: provider === 'groq' ? { id: `req_${crypto.randomBytes(8).toString('hex')}` } : undefined } };
  }

  function chat(provider, rec) {
    if (!state.keys[provider].includes(bearer(rec)))
      return openaiError(401, 'Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key');
    const b = rec.json;
    if (!b || typeof b !== 'object') return openaiError(400, 'We could not parse the JSON body of your request.');
    if (typeof b.model !== 'string') return openaiError(400, "you must provide a model parameter");
    if (![...CHAT_MODELS[provider], ...state.chat_models].includes(b.model))
      return openaiError(404, `The model \`${b.model}\` does not exist or you do not have access to it.`, 'invalid_request_error', 'model_not_found');
    if (!Array.isArray(b.messages) || b.messages.length === 0)
      return openaiError(400, "Invalid 'messages': empty array. Expected an array with minimum length 1.");
    const bad = b.messages.findIndex((m) => !['system', 'user', 'assistant'].includes(m?.role) || typeof m.content !== 'string');
    if (bad >= 0) return openaiError(400, `Invalid value for 'messages[${bad}]': a role (system, user, assistant) and a string content are required.`);
    const format = b.response_format?.type ?? 'text';
    if (!['text', 'json_object', 'json_schema'].includes(format))
      return openaiError(400, `Invalid value: '${format}'. Supported values are: 'text', 'json_object' and 'json_schema'.`);
    if (format === 'json_object' && !b.messages.some((m) => /json/i.test(m.content)))
      return openaiError(400, "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.");
    const next = state.chat_answers.length ? state.chat_answers.shift() : state.chat_content;
    const content = typeof next === 'string' ? next : JSON.stringify(next);
    const input = Math.ceil(b.messages.reduce((n, m) => n + m.content.length, 0) / 4);
    const output = Math.ceil(content.length / 4);
    return { status: 200, body: {
      id: `chatcmpl-${crypto.randomBytes(8).toString('hex')}`, object: 'chat.completion', created: Math.floor(Date.now() / 1000),
      model: b.model, choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
      usage: { prompt_tokens: input, completion_tokens: output, total_tokens: input + output } } };
  }

  function vision(model, rec) {
    if (!state.keys.gemini.includes(rec.headers['x-goog-api-key']))
      return googleError(403, 'Method doesn\'t allow unregistered callers. Please use API Key or other form of API consumer identity to call this API.', 'PERMISSION_DENIED');
    if (!MODELS.gemini.includes(model)) return googleError(404, `models/${model} is not found for API version v1beta`, 'NOT_FOUND');
    const b = rec.json;
    const parts = b?.contents?.[0]?.parts;
    if (!Array.isArray(parts)) return googleError(400, 'Invalid JSON payload: contents[0].parts is required', 'INVALID_ARGUMENT');
    const text = parts.find((p) => typeof p.text === 'string');
    const inline = parts.map((p) => p.inline_data ?? p.inlineData).find(Boolean);
    if (!text || !inline) return googleError(400, 'a text part and an inline_data part are required', 'INVALID_ARGUMENT');
    const mime = inline.mime_type ?? inline.mimeType;
    if (typeof mime !== 'string' || !/^image\//.test(mime)) return googleError(400, `Unsupported MIME type: ${mime}`, 'INVALID_ARGUMENT');
    if (typeof inline.data !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(inline.data) || inline.data.length % 4 !== 0)
      return googleError(400, 'Invalid value at contents[0].parts[1].inline_data.data (TYPE_BYTES), Base64 decoding failed', 'INVALID_ARGUMENT');
    const bytes = Buffer.from(inline.data, 'base64');
    rec.inline = { mime_type: mime, size: bytes.length, sha256: crypto.createHash('sha256').update(bytes).digest('hex') };
    const input = 258 + Math.ceil(text.text.length / 4);
    const output = Math.ceil(state.vision_text.length / 4);
    return { status: 200, body: {
      candidates: [{ content: { role: 'model', parts: [{ text: state.vision_text }] }, finishReason: 'STOP', index: 0 }],
      usageMetadata: { promptTokenCount: input, candidatesTokenCount: output, totalTokenCount: input + output },
      modelVersion: model, responseId: crypto.randomBytes(8).toString('hex') } };
  }

  function llamaparse(rec, parts) {
    const key = bearer(rec);
    if (!state.keys.llamaparse.includes(key)) return { status: 401, body: { detail: 'Invalid authentication token' } };
    if (rec.method === 'POST' && parts.length === 4 && parts[3] === 'upload') {
      const file = rec.multipart?.find((p) => p.name === 'file' && p.filename !== undefined);
      if (!file) return { status: 400, body: { detail: 'No file provided' } };
      const id = crypto.randomUUID();
      jobs.set(id, { id, polls: 0, statuses: [...state.job_statuses], file: { filename: file.filename, size: file.size, sha256: file.sha256 } });
      return { status: 200, body: { id, status: 'PENDING' } };
    }
    if (rec.method === 'GET' && parts[3] === 'job') {
      const job = jobs.get(parts[4]);
      if (!job) return { status: 404, body: { detail: 'Job not found' } };
      const status = job.statuses[Math.min(job.polls, job.statuses.length - 1)];
      if (parts.length === 5) {
        job.polls++;
        const body = { id: job.id, status };
        if (status === 'ERROR') Object.assign(body, { error_code: 'PDF_IS_BROKEN', error_message: 'The PDF cannot be read' });
        return { status: 200, body };
      }
      if (parts.length === 7 && parts[5] === 'result' && parts[6] === 'markdown') {
        if (!['SUCCESS', 'PARTIAL_SUCCESS'].includes(job.statuses[Math.min(Math.max(job.polls - 1, 0), job.statuses.length - 1)]))
          return { status: 400, body: { detail: 'Job is not finished' } };
        return { status: 200, body: { markdown: state.markdown, job_metadata: { job_pages: state.pages, credits_used: state.pages } } };
      }
    }
    return { status: 404, body: { detail: 'Not Found' } };
  }

  async function handle(rec) {
    const parts = rec.path.split('/').filter(Boolean);
    if (rec.method === 'POST' && rec.path === '/openai/v1/audio/transcriptions') return transcription('groq', rec);
    if (rec.method === 'POST' && rec.path === '/v1/audio/transcriptions') return transcription('openai', rec);
    if (rec.method === 'POST' && rec.path === '/openai/v1/chat/completions') return chat('groq', rec);
    if (rec.method === 'POST' && rec.path === '/v1/chat/completions') return chat('openai', rec);
    const g = /^\/v1beta\/models\/([^/:]+):generateContent$/.exec(rec.path);
    if (rec.method === 'POST' && g) return vision(g[1], rec);
    if (parts[0] === 'api' && parts[1] === 'v1' && parts[2] === 'parsing') return llamaparse(rec, parts);
    return { status: 404, body: { error: { message: `Unknown path ${rec.path}` } } };
  }

  function onRecord(rec, body) {
    const ct = rec.headers['content-type'] ?? '';
    if (/^multipart\/form-data/i.test(ct)) {
      const parts = parseMultipart(ct, body);
      rec.multipart = parts && parts.map(({ data, ...p }) => p);
      rec.body_text = rec.body_text.slice(0, 2000);   // the file's bytes are summarised by sha256
    } else if (/json/i.test(ct)) {
      try { rec.json = JSON.parse(rec.body_text); } catch { rec.json = undefined; }
    }
  }

  async function control(method, path, body) {
    if (method === 'POST' && path === '/__fake/ai') {
      for (const [k, v] of Object.entries(body ?? {})) {
        if (k === 'keys') Object.assign(state.keys, v);
        else state[k] = v;
      }
      return { ok: true };
    }
    if (method === 'GET' && path === '/__fake/jobs') return [...jobs.values()];
    return undefined;
  }

  const rec = await startRecorder({ port, host, handle, control, onRecord, onAnswer });
  return {
    ...rec,
    configure: (c) => control('POST', '/__fake/ai', c),
    jobs: () => [...jobs.values()],
    reset: () => { rec.reset(); jobs.clear(); },
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const arg = (n, d) => { const i = process.argv.indexOf(n); return i > 0 ? process.argv[i + 1] : d; };
  const fake = await startAi({ port: Number(arg('--port', 0)) });
  console.log(`fake AI providers listening on ${fake.url}`);
}
