// Casts in select= with type modifiers: PostgREST 12 (references/api/
// tables_views, "Casting Columns") casts a selected column to a type by
// name; a type with a modifier, numeric(10,2) or varchar(2), is a type
// too.  The type goes to PostgreSQL quoted and checked against a strict
// grammar: a type that does not exist, or a modifier it does not take, is
// PostgreSQL's error (400); anything that is no type name is 400 PGRST100.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConformance, http, READ } from './helpers.mjs';

let server;
before(async () => { server = await startConformance({ VENTROS_HTTP_DB_AGGREGATES_ENABLED: 'true' }); });
after(async () => { await server?.stop(); });

const get = (p) => http('GET', p, { headers: READ });

test('varchar(n) and character varying(n) cut the text', async () => {
  const r = await get('/customers?select=id,name::varchar(2)&order=id');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, [{ id: 1, name: 'An' }, { id: 2, name: 'Br' }, { id: 3, name: 'Ca' }]);
  const long = await get('/customers?select=short:name::character%20varying(3)&order=id');
  assert.equal(long.status, 200, long.text);
  assert.deepEqual(long.json.map((c) => c.short), ['Ana', 'Bru', 'Cai']);
});

test('numeric(10,2) gives the value its scale', async () => {
  const r = await get('/products?select=id,price::numeric(10,2)&id=eq.1');
  assert.equal(r.status, 200, r.text);
  assert.match(r.text, /"price":5\.00/);
  const spaced = await get('/products?select=price::numeric(%2010%20,%202%20)&id=eq.2');
  assert.equal(spaced.status, 200, spaced.text);
  assert.match(spaced.text, /"price":12\.00/);
});

test('a modifier with an array, inside an embedding, on an aggregate', async () => {
  const arr = await get('/customers?select=names:name::varchar(1)[]&id=eq.1');
  assert.equal(arr.status, 400, arr.text); /* text does not cast to an array */
  const embed = await get('/customers?select=name,orders(status::varchar(4))&id=eq.1');
  assert.equal(embed.status, 200, embed.text);
  assert.deepEqual(embed.json[0].orders.map((o) => o.status).sort(), ['open', 'ship']);
  const agg = await get('/products?select=total:price.sum()::numeric(10,1)');
  assert.equal(agg.status, 200, agg.text);
  assert.match(agg.text, /"total":47\.0/);
  const inner = await get('/products?select=price::numeric(10,3).max()');
  assert.equal(inner.status, 200, inner.text);
  assert.match(inner.text, /"max":30\.000/);
});

test('a modifier the type does not take, or out of its range, is PostgreSQL\'s 400', async () => {
  const int = await get('/customers?select=id::int4(5)');
  assert.equal(int.status, 400, int.text);
  const scale = await get('/products?select=price::numeric(2000,1)');
  assert.equal(scale.status, 400, scale.text);
  const none = await get('/products?select=price::no_such_type(3)');
  assert.equal(none.status, 400, none.text);
  assert.equal(none.json.code, '42704');
});

test('anything else after :: is no type name: 400 PGRST100, nothing sent', async () => {
  for (const cast of ['varchar(5);select', 'numeric(10,2))', 'varchar(a)', 'numeric(1,2,3)', 'varchar(5)x',
    'numeric(-1)', 'text"', 'varchar(5) x', 'varchar(1)::int']) {
    const r = await get(`/customers?select=name::${encodeURIComponent(cast)}`);
    assert.equal(r.status, 400, `${cast}: ${r.text}`);
    assert.equal(r.json.code, 'PGRST100', `${cast}: ${r.text}`);
  }
});
