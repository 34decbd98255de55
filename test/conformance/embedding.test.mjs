// Resource embedding as PostgREST 12 documents it (references/api/
// resource_embedding): many-to-one, one-to-many, one-to-one, many-to-many
// through a junction, views (the lineage of their columns), computed
// relationships, disambiguation by key or column, !inner at any depth,
// aliases, filters/order/limit on embedded resources, spreads, and the
// PGRST200/PGRST201 errors; always under the caller's role and its
// row-level security.  On the fixture's shop (fixture.sql).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startConformance, http, token, db, READ, waitForLog } from './helpers.mjs';

let server;
before(async () => { server = await startConformance(); });
after(async () => { await server?.stop(); });

// anonymous (conformance_anon: no private order), or conformance_user (every order)
const get = (p) => http('GET', p, { headers: READ });
const user = (p) => http('GET', p, { headers: { ...READ, Authorization: `Bearer ${token('conformance_user')}` } });
const ok = (r) => { assert.equal(r.status, 200, r.text); return r.json; };

test('many-to-one answers an object, one-to-many an array', async () => {
  assert.deepEqual(ok(await get('/orders?select=id,customers(name)&order=id')), [
    { id: 10, customers: { name: 'Ana' } },
    { id: 11, customers: { name: 'Ana' } },
  ]);
  assert.deepEqual(ok(await user('/customers?select=name,orders(id)&order=id&orders.order=id')), [
    { name: 'Ana', orders: [{ id: 10 }, { id: 11 }] },
    { name: 'Bruno', orders: [{ id: 12 }] },
    { name: 'Caio', orders: [] },
  ]);
});

test('embedded rows are the caller\'s: row-level security applies inside embeddings', async () => {
  const anon = ok(await get('/customers?select=name,orders(id)&id=eq.2'));
  assert.deepEqual(anon, [{ name: 'Bruno', orders: [] }]);
  const viaView = ok(await get('/customers?select=name,order_summaries(order_no)&id=eq.2'));
  assert.deepEqual(viaView, [{ name: 'Bruno', order_summaries: [] }]);
});

test('one-to-one: a foreign key that is the primary key, or unique, answers an object both ways', async () => {
  assert.deepEqual(ok(await get('/customers?select=name,profiles(bio)&order=id&limit=2')), [
    { name: 'Ana', profiles: { bio: 'likes tea' } },
    { name: 'Bruno', profiles: null },
  ]);
  assert.deepEqual(ok(await get('/profiles?select=bio,customers(name)')), [{ bio: 'likes tea', customers: { name: 'Ana' } }]);
  assert.deepEqual(ok(await get('/customers?select=name,loyalty_cards(number)&id=eq.2')),
    [{ name: 'Bruno', loyalty_cards: { number: 'L-2' } }]);
});

test('many-to-many through a junction table, both ways, and named by the junction', async () => {
  assert.deepEqual(ok(await get('/products?select=name,tags(label)&order=id')), [
    { name: 'tea', tags: [{ label: 'drink' }] },
    { name: 'cup', tags: [{ label: 'kitchen' }] },
    { name: 'pot', tags: [{ label: 'kitchen' }] },
  ]);
  assert.deepEqual(ok(await get('/tags?select=label,products(name)&order=id&products.order=name')), [
    { label: 'drink', products: [{ name: 'tea' }] },
    { label: 'kitchen', products: [{ name: 'cup' }, { name: 'pot' }] },
  ]);
  assert.deepEqual(ok(await get('/products?select=name,tags!product_tags(label)&id=eq.1')),
    [{ name: 'tea', tags: [{ label: 'drink' }] }]);
  assert.deepEqual(ok(await get('/boards?select=title,labels(code)&id=eq.1')), [{ title: 'alpha', labels: [{ code: 'bug' }] }]);
});

test('two keys between the same tables: 300 PGRST201 unless a hint names one', async () => {
  const r = await get('/orders?select=id,addresses(city)');
  assert.equal(r.status, 300, r.text);
  assert.equal(r.json.code, 'PGRST201');
  assert.equal(r.json.message, "Could not embed because more than one relationship was found for 'orders' and 'addresses'");
  assert.match(r.json.hint, /'addresses!billing'/);
  assert.match(r.json.hint, /'addresses!shipping'/);
  assert.deepEqual(r.json.details, [
    { cardinality: 'many-to-one', embedding: 'orders with addresses', relationship: 'billing using orders(billing_address_id) and addresses(id)' },
    { cardinality: 'many-to-one', embedding: 'orders with addresses', relationship: 'shipping using orders(shipping_address_id) and addresses(id)' },
  ]);
  assert.equal((await get('/addresses?select=city,orders(id)')).json.code, 'PGRST201');
  assert.deepEqual(ok(await get('/orders?select=id,addresses!billing(city),ship:addresses!shipping_address_id(city)&id=eq.10')),
    [{ id: 10, addresses: { city: 'Lisbon' }, ship: { city: 'Porto' } }]);
  assert.deepEqual(ok(await get('/addresses?select=city,orders!shipping(id)&id=eq.2')), [{ city: 'Porto', orders: [{ id: 10 }] }]);
});

test('a referencing column as the embedding\'s name: the row it points to', async () => {
  assert.deepEqual(ok(await get('/orders?select=id,billing_address_id(city)&id=eq.10')),
    [{ id: 10, billing_address_id: { city: 'Lisbon' } }]);
  assert.deepEqual(ok(await get('/staff?select=name,manager_id(name)&id=eq.2')), [{ name: 'Dana', manager_id: { name: 'Boss' } }]);
  // customers and the view buyers over it are both targets of customer_id: the hint names the relation
  const r = await get('/orders?select=id,customer_id(name)&id=eq.10');
  assert.equal(r.status, 300, r.text);
  assert.match(r.json.hint, /'customer_id!customers', 'customer_id!buyers'|'customer_id!buyers', 'customer_id!customers'/);
  assert.deepEqual(ok(await get('/orders?select=id,customer_id!buyers(name)&id=eq.10')), [{ id: 10, customer_id: { name: 'Ana' } }]);
});

test('a self-reference named by its table embeds the children', async () => {
  assert.deepEqual(ok(await get('/staff?select=name,staff(name)&id=eq.1&staff.order=id')),
    [{ name: 'Boss', staff: [{ name: 'Dana' }, { name: 'Eli' }] }]);
});

test('views take their relationships from the lineage of their columns, renamed or through views', async () => {
  assert.deepEqual(ok(await user('/order_summaries?select=order_no,customers(name)&order=order_no')), [
    { order_no: 10, customers: { name: 'Ana' } },
    { order_no: 11, customers: { name: 'Ana' } },
    { order_no: 12, customers: { name: 'Bruno' } },
  ]);
  assert.deepEqual(ok(await get('/customers?select=name,order_summaries(order_no,shouted)&id=eq.1&order_summaries.order=order_no')),
    [{ name: 'Ana', order_summaries: [{ order_no: 10, shouted: 'OPEN' }, { order_no: 11, shouted: 'SHIPPED' }] }]);
  assert.deepEqual(ok(await get('/open_orders?select=order_no,customers(name),items(product_id)&items.order=product_id')),
    [{ order_no: 10, customers: { name: 'Ana' }, items: [{ product_id: 1 }, { product_id: 2 }] }]);
  assert.deepEqual(ok(await get('/order_summaries?select=order_no,buyers(name)&order_no=eq.10')),
    [{ order_no: 10, buyers: { name: 'Ana' } }]);
  // a view does not hide its table's relationships (the table answers for itself)
  assert.deepEqual(ok(await get('/customers?select=name,orders(id)&id=eq.1&orders.order=id')),
    [{ name: 'Ana', orders: [{ id: 10 }, { id: 11 }] }]);
});

test('computed relationships: functions of the row type, SETOF or one row (ROWS 1)', async () => {
  assert.deepEqual(ok(await get('/customers?select=name,big_orders(id)&id=eq.1')), [{ name: 'Ana', big_orders: [{ id: 11 }] }]);
  assert.deepEqual(ok(await get('/orders?select=id,first_item(product_id,quantity)&id=eq.10')),
    [{ id: 10, first_item: { product_id: 1, quantity: 2 } }]);
  assert.deepEqual(ok(await get('/staff?select=name,colleagues(name)&id=eq.2')), [{ name: 'Dana', colleagues: { name: 'Boss' } }]);
  // and they embed further through foreign keys
  assert.deepEqual(ok(await get('/customers?select=big_orders(id,items(quantity))&id=eq.1')),
    [{ big_orders: [{ id: 11, items: [{ quantity: 1 }] }] }]);
});

test('computed fields: functions of the row type read as columns in select, filters and order, never in * nor writes', async () => {
  assert.deepEqual(ok(await get('/customers?select=id,full_label&id=eq.1')), [{ id: 1, full_label: 'Ana #1' }]);
  assert.deepEqual(ok(await get('/customers?select=id&full_label=eq.Bruno%20%232')), [{ id: 2 }]);
  assert.deepEqual(ok(await get('/items?select=order_id,product_id,total:line_total&order=line_total.desc&limit=1')),
    [{ order_id: 11, product_id: 3, total: 30 }]);
  assert.deepEqual(ok(await get('/customers?id=eq.1')), [{ id: 1, name: 'Ana' }]);
  assert.deepEqual(ok(await get('/orders?select=id,items(product_id,line_total)&id=eq.10&items.order=product_id')),
    [{ id: 10, items: [{ product_id: 1, line_total: 10 }, { product_id: 2, line_total: 12 }] }]);
  const w = await http('POST', '/customers', { headers: { 'Content-Profile': 'conformance' }, body: { id: 9, name: 'X', full_label: 'no' } });
  assert.equal(w.status, 400, w.text);
  assert.equal(w.json.code, 'PGRST204');
});

test('!inner keeps the parents with an embedded row, at any depth', async () => {
  assert.deepEqual(ok(await get('/customers?select=name,orders!inner(id)&orders.status=eq.shipped')),
    [{ name: 'Ana', orders: [{ id: 11 }] }]);
  assert.deepEqual(ok(await get('/customers?select=name,orders!inner(id,items!inner(quantity))&orders.items.status=eq.back')),
    [{ name: 'Ana', orders: [{ id: 10, items: [{ quantity: 1 }] }] }]);
  // without the inner !inner, the order without a matching item stays
  assert.deepEqual(ok(await get('/customers?select=name,orders!inner(id,items(quantity))&orders.items.status=eq.back&orders.order=id')),
    [{ name: 'Ana', orders: [{ id: 10, items: [{ quantity: 1 }] }, { id: 11, items: [] }] }]);
});

test('filters, order, limit and offset on embedded resources, by alias', async () => {
  assert.deepEqual(ok(await get('/orders?select=id,items(product_id)&id=eq.10&items.order=product_id.desc&items.limit=1')),
    [{ id: 10, items: [{ product_id: 2 }] }]);
  assert.deepEqual(ok(await get('/orders?select=id,lines:items(product_id)&id=eq.10&lines.order=product_id&lines.offset=1')),
    [{ id: 10, lines: [{ product_id: 2 }] }]);
  assert.deepEqual(ok(await get('/orders?select=id,bill:addresses!billing(city)&bill.city=eq.Porto&order=id')),
    [{ id: 10, bill: null }, { id: 11, bill: null }]);
});

test('spreads: a to-one row\'s columns join the parent\'s; a to-many spread is refused', async () => {
  assert.deepEqual(ok(await get('/orders?select=id,...customers(customer_name:name)&id=eq.10')), [{ id: 10, customer_name: 'Ana' }]);
  assert.deepEqual(ok(await get('/customers?select=name,...profiles(bio)&id=eq.1')), [{ name: 'Ana', bio: 'likes tea' }]);
  assert.equal((await get('/customers?select=name,...orders(id)')).status, 400);
});

test('no relationship: 400 PGRST200 in PostgREST\'s shape', async () => {
  const r = await get('/orders?select=id,tags(*)');
  assert.equal(r.status, 400, r.text);
  assert.deepEqual(r.json, {
    code: 'PGRST200',
    message: "Could not find a relationship between 'orders' and 'tags' in the schema cache",
    details: "Searched for a foreign key relationship between 'orders' and 'tags' in the schema 'conformance', but no matches were found.",
    hint: null,
  });
  const h = await get('/orders?select=id,addresses!nope(city)');
  assert.equal(h.status, 400);
  assert.equal(h.json.code, 'PGRST200');
  assert.match(h.json.details, /using the hint 'nope'/);
});

test('two embeddings under one name: 400 42712', async () => {
  const r = await get('/orders?select=customers(name),customers(id)');
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.code, '42712');
  assert.equal((await get('/orders?select=id,a:customers(name),b:customers(id)&id=eq.10')).status, 200);
});

test('aggregates are off unless enabled: 400 PGRST123', async () => {
  const r = await get('/items?select=quantity.sum()');
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.code, 'PGRST123');
  assert.equal(r.json.message, 'Use of aggregate functions is not allowed');
});

test('the relationships are the schema cache\'s: a new foreign key embeds after NOTIFY pgrst', async () => {
  assert.equal((await get('/customers?select=name,gift_notes(text)')).json.code, 'PGRST200');
  const c = await db();
  try {
    await c.query('CREATE TABLE conformance.gift_notes (customer_id integer REFERENCES conformance.customers, text text)');
    await c.query("INSERT INTO conformance.gift_notes VALUES (3, 'for Caio')");
    await c.query('GRANT SELECT ON conformance.gift_notes TO conformance_anon');
    await c.query("NOTIFY pgrst, 'reload schema'");
  } finally {
    await c.end();
  }
  await waitForLog(server, 'schema reloaded on NOTIFY pgrst');
  assert.deepEqual(ok(await get('/customers?select=name,gift_notes(text)&id=eq.3')), [{ name: 'Caio', gift_notes: [{ text: 'for Caio' }] }]);
});

test('embedding nests deeper than three levels, with filters and !inner down there', async () => {
  // customers -> orders -> items -> products -> tags (through product_tags): four levels
  const r = ok(await get('/customers?select=name,orders(id,items(quantity,products(name,tags(label))))'
    + '&id=eq.1&orders.order=id&orders.items.order=product_id'));
  assert.deepEqual(r, [{
    name: 'Ana',
    orders: [
      { id: 10, items: [
        { quantity: 2, products: { name: 'tea', tags: [{ label: 'drink' }] } },
        { quantity: 1, products: { name: 'cup', tags: [{ label: 'kitchen' }] } },
      ] },
      { id: 11, items: [{ quantity: 1, products: { name: 'pot', tags: [{ label: 'kitchen' }] } }] },
    ],
  }]);
  // a filter and !inner on the fourth level narrow every level above
  const inner = ok(await get('/customers?select=name,orders!inner(id,items!inner(products!inner(tags!inner(label))))'
    + '&orders.items.products.tags.label=eq.drink'));
  assert.deepEqual(inner, [{ name: 'Ana', orders: [{ id: 10, items: [{ products: { tags: [{ label: 'drink' }] } }] }] }]);
  // a self-reference five levels down: the children of the children ...
  const s = ok(await get('/staff?select=name,staff(name,staff(name,staff(name,staff(name))))&id=eq.1&staff.order=name'));
  assert.deepEqual(s, [{ name: 'Boss', staff: [{ name: 'Dana', staff: [] }, { name: 'Eli', staff: [] }] }]);
});

test('more than eight levels of embedding is refused (400)', async () => {
  const deep = 'staff(name,'.repeat(9) + 'name' + ')'.repeat(9);
  const r = await get(`/staff?select=name,${deep}`);
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.message, /at most 8 levels/);
});

test('a junction that is a view: many-to-many through it', async () => {
  const r = ok(await get('/boards?select=title,customers(name)&order=id&customers.order=name'));
  assert.deepEqual(r, [
    { title: 'alpha', customers: [{ name: 'Ana' }, { name: 'Bruno' }] },
    { title: 'beta', customers: [] },
    { title: 'gamma', customers: [{ name: 'Bruno' }] },
  ]);
  const back = ok(await get('/customers?select=name,boards!board_watchers(title)&id=eq.2&boards.order=id'));
  assert.deepEqual(back, [{ name: 'Bruno', boards: [{ title: 'alpha' }, { title: 'gamma' }] }]);
});
