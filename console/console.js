// The agent console: one page that speaks only Ventros's public HTTP API
// (docs/console.md).  Sign in with /rpc/login; conversations are the active
// and snoozed sessions; a conversation is its messages (with what enrichment
// extracted), the contact panel and a reply box that calls /rpc/send_message.
// Live: /events/stream (Server-Sent Events read with fetch, so the token
// travels in the Authorization header), resumed with Last-Event-ID.
// Everything from the API is put on the page as text (textContent), never as
// markup.
'use strict';

const state = { token: null, me: null, agent: null, agents: [], sessions: [], contacts: new Map(), current: null,
                lastEventId: null, stream: null, refresh: null };
const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c instanceof Node ? c : String(c));
  return e;
}

function say(text) {
  $('status').textContent = text;
  if (text) document.body.dataset.said = text; // the last thing said, for whoever looks after it faded
  if (text) setTimeout(() => { if ($('status').textContent === text) $('status').textContent = ''; }, 4000);
}

// one call of the API; PostgREST's error JSON becomes an Error with its message
async function api(method, path, body, headers = {}) {
  const h = { Accept: 'application/json', ...headers };
  if (state.token) h.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const r = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  const json = text ? JSON.parse(text) : null;
  if (r.status === 401 && state.token) signOut('Your session ended: sign in again.');
  if (!r.ok) throw new Error(json?.message ?? `${r.status} ${r.statusText}`);
  return json;
}
const rpc = (name, args) => api('POST', `/rpc/${name}`, args);
const idList = (ids) => `(${[...new Set(ids)].join(',')})`;

// ---- signing in and out

async function signIn(email, password) {
  const grant = await api('POST', '/rpc/login', { email, password });
  state.token = grant.access_token;
  sessionStorage.setItem('ventros.token', state.token);
  await start();
}

function signOut(message = '') {
  state.token = null;
  sessionStorage.removeItem('ventros.token');
  state.stream?.abort();
  state.current = null;
  delete $('conversation').dataset.session;
  delete $('contact').dataset.contact;
  $('conversation').replaceChildren(el('p', { class: 'empty' }, 'Choose a conversation.'));
  $('contact').replaceChildren();
  $('app').hidden = true;
  $('signin').hidden = false;
  $('signin-error').textContent = message;
}

async function start() {
  state.me = await api('GET', '/rpc/me');
  state.agents = await api('GET', '/agents?select=id,name,user_id,type,status&order=name');
  state.agent = state.agents.find((a) => a.user_id === state.me?.id) ?? null;
  $('whoami').textContent = `${state.me?.name ?? ''} (${state.me?.role ?? ''})`;
  $('signin').hidden = true;
  $('app').hidden = false;
  await loadConversations();
  listen();
}

// ---- the conversation list

async function loadConversations() {
  state.sessions = await api('GET', '/sessions?status=in.(active,snoozed)&order=last_activity_at.desc&limit=100' +
    '&select=id,contact_id,channel_id,status,assigned_agent_id,last_activity_at,message_count,version');
  const ids = state.sessions.map((s) => s.contact_id);
  if (ids.length) {
    for (const c of await api('GET', `/contacts?id=in.${idList(ids)}&select=id,name,phone,email,tags,language,version`)) {
      state.contacts.set(c.id, c);
    }
  }
  renderConversations();
}

function renderConversations() {
  const nav = $('conversations');
  nav.replaceChildren(...state.sessions.map((s) => {
    const c = state.contacts.get(s.contact_id);
    const agent = state.agents.find((a) => a.id === s.assigned_agent_id);
    return el('a', { href: `#${s.id}`, class: s.id === state.current ? 'current' : '', dataset: { session: s.id },
                     onclick: (e) => { e.preventDefault(); openConversation(s.id); } },
      c?.name ?? 'Unknown contact',
      el('small', {}, `${s.message_count} messages · ${s.status}${agent ? ` · ${agent.name}` : ''} · ` +
                      new Date(s.last_activity_at).toLocaleTimeString()));
  }));
  if (!state.sessions.length) nav.replaceChildren(el('p', { class: 'empty' }, 'No open conversations.'));
}

// ---- one conversation

async function openConversation(id) {
  state.current = id;
  location.hash = id;
  renderConversations();
  try {
    await renderConversation();
  } catch (e) {
    say(e.message);
  }
}

async function renderConversation() {
  const id = state.current;
  const [session] = await api('GET', `/sessions?id=eq.${id}&select=id,contact_id,channel_id,status,assigned_agent_id,version`);
  if (!session || id !== state.current) return;
  const messages = await api('GET', `/messages?session_id=eq.${id}&order=timestamp.asc,id.asc&limit=500` +
    '&select=id,from_me,text,content_type,media_url,status,timestamp');
  const enrichments = messages.length
    ? await api('GET', `/message_enrichments?message_id=in.${idList(messages.map((m) => m.id))}` +
                       '&status=eq.completed&select=message_id,kind,extracted_text')
    : [];
  const section = $('conversation');
  const assign = el('select', { 'aria-label': 'Assign to' }, el('option', { value: '' }, 'Assign to…'),
    ...state.agents.filter((a) => a.type === 'human').map((a) => {
      const o = el('option', { value: a.id }, a.name);
      if (a.id === session.assigned_agent_id) o.selected = true;
      return o;
    }));
  assign.addEventListener('change', () => act(() => rpc('assign_session_agent',
    { session_id: id, agent_id: assign.value, expected_version: session.version }), 'Assigned'));
  if (section.dataset.session !== id) {
    // made once per conversation: a redraw after an event leaves the reply
    // box, and what is being typed in it, alone
    const text = el('textarea', { id: 'reply-text', placeholder: 'Reply…', 'aria-label': 'Reply' });
    const form = el('form', { class: 'reply', id: 'reply' }, text, el('button', { type: 'submit' }, 'Send'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (!text.value.trim()) return;
      act(async () => {
        await rpc('send_message', { channel_id: session.channel_id, contact_id: session.contact_id, text: text.value,
                                    ...(state.agent ? { agent_id: state.agent.id } : {}) });
        text.value = '';
      }, 'Sent');
    });
    section.replaceChildren(el('header', { id: 'conversation-header' }), el('div', { class: 'messages', id: 'messages' }), form);
    section.dataset.session = id;
  }
  const list = $('messages');
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.replaceChildren(...messages.map((m) => messageView(m, enrichments)));
  $('conversation-header').replaceChildren(
    el('strong', {}, state.contacts.get(session.contact_id)?.name ?? ''), ` ${session.status} `, assign,
    el('button', { type: 'button', id: 'close-session', onclick: () => act(() => rpc('close_session',
      { session_id: id, expected_version: session.version, end_reason: 'manually_closed' }), 'Closed') }, 'Close'));
  if (atBottom) list.scrollTop = list.scrollHeight;
  await renderContact(session.contact_id);
}

function messageView(m, enrichments) {
  const ticks = { sent: '✓', delivered: '✓✓', read: '✓✓ read', played: '✓✓ played', failed: '✗ failed' };
  const e = el('div', { class: `message${m.from_me ? ' mine' : ''}`, dataset: { message: m.id, status: m.status } });
  if (m.text) e.append(m.text);
  if (m.media_url && /^https?:\/\//.test(m.media_url)) {
    e.append(el('a', { href: m.media_url, target: '_blank', rel: 'noopener noreferrer' }, `[${m.content_type}]`));
  }
  for (const x of enrichments.filter((x) => x.message_id === m.id && x.extracted_text)) {
    e.append(el('span', { class: 'enrichment' }, `${x.kind ?? 'text'}: ${x.extracted_text}`));
  }
  e.append(el('span', { class: 'meta' }, `${new Date(m.timestamp).toLocaleTimeString()}${m.from_me ? ` ${ticks[m.status] ?? m.status}` : ''}`));
  return e;
}

// ---- the contact panel

async function renderContact(contactId) {
  const [c] = await api('GET', `/contacts?id=eq.${contactId}&select=id,name,phone,email,language,tags,version`);
  if (!c) return;
  const custom = await api('GET', `/contact_custom_fields?contact_id=eq.${contactId}&order=field_key&select=field_key,field_value`);
  state.contacts.set(c.id, c);
  const statuses = await api('GET', `/contact_pipeline_statuses?contact_id=eq.${contactId}&exited_at=is.null&select=status_id`);
  const names = statuses.length
    ? await api('GET', `/pipeline_statuses?id=in.${idList(statuses.map((s) => s.status_id))}&select=id,name`) : [];
  const notes = await rpc('list_notes', { contact_id: contactId, page_size: 20 });
  const panel = $('contact');
  if (panel.dataset.contact !== contactId) {
    // made once per contact, as the reply box is
    const tag = el('input', { id: 'new-tag', placeholder: 'Add a tag', 'aria-label': 'Add a tag' });
    const tagForm = el('form', { id: 'tag-form' }, tag, el('button', { type: 'submit' }, 'Tag'));
    tagForm.addEventListener('submit', (e) => {
      e.preventDefault();
      const t = tag.value.trim();
      // the tags as they are now (another agent may have tagged meanwhile)
      if (t) act(async () => {
        const [now] = await api('GET', `/contacts?id=eq.${contactId}&select=tags,version`);
        await rpc('update_contact', { contact_id: contactId, expected_version: now.version,
                                      changes: { tags: [...new Set([...now.tags, t])] } });
        tag.value = '';
      }, 'Tagged');
    });
    panel.replaceChildren(el('div', { id: 'contact-head' }), tagForm, el('div', { id: 'contact-more' }));
    panel.dataset.contact = contactId;
  }
  const fields = [['Phone', c.phone], ['Email', c.email], ['Language', c.language],
                  ...custom.map((f) => [f.field_key, typeof f.field_value === 'string' ? f.field_value : JSON.stringify(f.field_value)])];
  $('contact-head').replaceChildren(
    el('h2', {}, c.name),
    el('dl', {}, ...fields.filter(([, v]) => v != null && v !== '').flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])),
    el('h3', {}, 'Tags'), el('div', { id: 'tags' }, ...c.tags.map((t) => el('span', { class: 'tag' }, t))));
  $('contact-more').replaceChildren(
    el('h3', {}, 'Pipeline'), el('div', {}, names.map((n) => n.name).join(', ') || '—'),
    el('h3', {}, 'Notes'), ...(notes ?? []).map((n) => el('div', { class: 'note' }, n.content)));
}

// an action, then what it changed is shown again (the stream does it too)
async function act(fn, done) {
  try {
    await fn();
    say(done);
    await refreshSoon(0);
  } catch (e) {
    say(e.message);
  }
}

// ---- live: the tenant's events

function refreshSoon(ms = 150) {
  clearTimeout(state.refresh);
  return new Promise((ok) => {
    state.refresh = setTimeout(async () => {
      try {
        await loadConversations();
        if (state.current) await renderConversation();
      } catch (e) {
        say(e.message);
      }
      ok();
    }, ms);
  });
}

async function listen() {
  const live = $('live');
  let retry = 1000;
  while (state.token) {
    const ctl = new AbortController();
    state.stream = ctl;
    try {
      const headers = { Authorization: `Bearer ${state.token}`, Accept: 'text/event-stream' };
      if (state.lastEventId) headers['Last-Event-ID'] = state.lastEventId;
      const r = await fetch('/events/stream?types=message.*,session.*,contact.*,note.*', { headers, signal: ctl.signal });
      if (!r.ok || !r.body) throw new Error(`stream ${r.status}`);
      live.textContent = 'live';
      live.classList.add('on');
      retry = 1000;
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, '\n');
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          onEvent(buf.slice(0, cut));
          buf = buf.slice(cut + 2);
        }
      }
    } catch (e) {
      if (ctl.signal.aborted) return;
    }
    live.textContent = 'offline';
    live.classList.remove('on');
    // again after 1 s, doubling to 30 s while the stream stays away
    await new Promise((ok) => setTimeout(ok, retry));
    retry = Math.min(retry * 2, 30000);
  }
}

function onEvent(block) {
  let data = false;
  for (const line of block.split('\n')) {
    if (line.startsWith('id:')) state.lastEventId = line.slice(3).trim();
    else if (line.startsWith('data:')) data = true;
  }
  if (data) refreshSoon();
}

// ---- boot

$('signin').addEventListener('submit', (e) => {
  e.preventDefault();
  signIn($('email').value, $('password').value).catch((err) => { $('signin-error').textContent = err.message; });
});
$('signout').addEventListener('click', () => signOut());
state.token = sessionStorage.getItem('ventros.token');
if (state.token) {
  start().then(() => { if (location.hash.length > 1) openConversation(location.hash.slice(1)); })
    .catch(() => signOut());
} else {
  signOut();
}
