/*
 * fuzz_common.h
 *	  What the front's harnesses share: a schema cache like the one
 *	  ventros-http reads from the catalog (relations with foreign keys between
 *	  them, functions of each shape the router knows), a splitter from fuzz
 *	  input to query arguments, and a check that generated SQL is well quoted.
 */
#ifndef VN_FUZZ_COMMON_H
#define VN_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "query.h"
#include "schema.h"

#define FUZZ_CHECK(cond) \
	do \
	{ \
		if (!(cond)) \
		{ \
			fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
			abort(); \
		} \
	} while (0)

static VnColumn contact_cols[] = {
	{"id", "uuid", 'U', false, "gen_random_uuid()"},
	{"tenant_id", "text", 'S', false, "ventros.current_tenant()"},
	{"name", "text", 'S', false, "NULL"},
	{"phone", "text", 'S', false, "NULL"},
	{"tags", "text[]", 'A', false, "'{}'::text[]"},
	{"data", "jsonb", 'U', false, "'{}'::jsonb"},
	{"search", "tsvector", 'U', true, "NULL"},
	{"version", "integer", 'N', false, "1"},
	{"created_at", "timestamp with time zone", 'D', false, "now()"},
};
static VnColumn channel_cols[] = {
	{"id", "uuid", 'U', false, "gen_random_uuid()"},
	{"tenant_id", "text", 'S', false, "ventros.current_tenant()"},
	{"name", "text", 'S', false, "NULL"},
	{"status", "text", 'S', false, "'draft'::text"},
	{"version", "integer", 'N', false, "1"},
};
static VnColumn message_cols[] = {
	{"id", "uuid", 'U', false, "gen_random_uuid()"},
	{"tenant_id", "text", 'S', false, "ventros.current_tenant()"},
	{"contact_id", "uuid", 'U', false, "NULL"},
	{"channel_id", "uuid", 'U', false, "NULL"},
	{"body", "text", 'S', false, "NULL"},
	{"sent", "boolean", 'B', false, "false"},
	{"version", "integer", 'N', false, "1"},
};
static VnColumn note_cols[] = {
	{"note_id", "bigint", 'N', false, "NULL"},
	{"contact_id", "uuid", 'U', false, "NULL"},
	{"text", "text", 'S', false, "NULL"},
};
/* the rows of an rpc result that is no view's (OUT/TABLE columns): hidden */
static VnColumn trail_cols[] = {
	{"seq", "bigint", 'N', false, "NULL"},
	{"event_type", "text", 'S', false, "NULL"},
	{"new_value", "jsonb", 'U', false, "NULL"},
};
static VnRelation rels[] = {
	/* name, description, base, aggregate, has_id, npk, ncols, cols, oid, hidden */
	{"contacts", "People.", 1001, true, true, 0, 9, contact_cols, 2001, false},
	{"channels", "Channels.", 1002, true, true, 0, 5, channel_cols, 2002, false},
	{"messages", "Messages.", 1003, true, true, 0, 7, message_cols, 2003, false},
	{"notes", NULL, 1004, false, false, 0, 3, note_cols, 2004, false},
	{"trail", "", 0, false, false, 0, 3, trail_cols, 0, true},
};
static char		   *fk1_from[] = {"contact_id"}, *fk1_to[] = {"id"};
static char		   *fk2_from[] = {"channel_id"}, *fk2_to[] = {"id"};
static char		   *fk3_from[] = {"contact_id"}, *fk3_to[] = {"id"};
static VnForeignKey fks[] = {
	{"messages_contact_id_fkey", 2, 0, 1, fk1_from, fk1_to},
	{"messages_channel_id_fkey", 2, 1, 1, fk2_from, fk2_to},
	{"notes_contact_id_fkey", 3, 0, 1, fk3_from, fk3_to},
};
/* many-to-many contacts <-> channels through messages' keys; a computed relationship */
static VnJunction junctions[] = {{0, 1, 2, 0, 1}, {1, 0, 2, 1, 0}};
static VnComputed computed[] = {{"recent_messages", 0, 2, false}, {"last_note", 0, 3, true}};
static char		 *f1_names[] = {"name", "phone"}, *f1_types[] = {"text", "text"};
static char		 *f3_names[] = {"email", "password"}, *f3_types[] = {"text", "text"};
static char		 *f4_names[] = {"n", "tags", "doc"}, *f4_types[] = {"integer", "text[]", "jsonb"};
static char		 *f5_names[] = {"csv", "project_id"}, *f5_types[] = {"text", "uuid"};
static char		 *f6_names[] = {"aggregate_id", "field"}, *f6_types[] = {"uuid", "text"};
/*
 * Each shape the router knows, with overloads of "square" told apart by
 * argument names (adjacent, as the schema cache keeps them).
 */
static VnFunction funcs[] = {
	{"create_contact", NULL, 2, 1, f1_names, f1_types, "SS", "api.contacts", 'c', false, false, false, false, "api", 0, NULL},
	{"export_csv", NULL, 0, 0, NULL, NULL, "", "ventros.\"text/csv\"", 'd', false, true, false, false, "ventros", -1, "text/csv"},
	{"import_csv", NULL, 2, 1, f5_names, f5_types, "SU", "ventros.import_result", 'c', true, false, false, false, "ventros", 4, NULL},
	{"list_contacts", NULL, 0, 0, NULL, NULL, "", "api.contacts", 'c', true, true, false, false, "api", 0, NULL},
	{"login", NULL, 2, 2, f3_names, f3_types, "SS", "api.auth_grant", 'c', false, false, false, true, "api", -1, NULL},
	{"numbers", NULL, 1, 1, f4_names, f4_types, "N", "integer", 'b', true, true, false, false, "ventros", -1, NULL},
	{"ping", NULL, 0, 0, NULL, NULL, "", "void", 'p', false, false, true, false, "ventros", -1, NULL},
	{"square", NULL, 3, 1, f4_names, f4_types, "NAU", "integer", 'b', false, true, false, false, "ventros", -1, NULL},
	{"square", NULL, 1, 0, f4_names, f4_types, "N", "integer", 'b', false, true, false, false, "ventros", -1, NULL},
	{"trail", NULL, 2, 0, f6_names, f6_types, "US", "record", 'p', true, true, false, false, "ventros", 4, NULL},
};
static VnSchema fuzz_schema = {"api", true, 5, rels, 3, fks, 10, funcs, 2, junctions, 2, computed};

/*
 * Query arguments from text: "k=v&k=v", no %-decoding (the query-string
 * harness covers that), at most 200 as the front allows; keys and values
 * are malloc'd (fuzz_args_free).
 */
static void
fuzz_args(const char *s, size_t len, VnArgs *args)
{
	size_t i = 0;

	args->n = 0;
	args->items = calloc(len / 2 + 2, sizeof(VnArg));
	while (i <= len && args->n < 200)
	{
		size_t end = i;
		size_t eq;

		while (end < len && s[end] != '&')
			end++;
		for (eq = i; eq < end && s[eq] != '='; eq++)
			;
		if (end > i)
		{
			args->items[args->n].key = strndup(s + i, eq - i);
			args->items[args->n].value = eq < end ? strndup(s + eq + 1, end - eq - 1) : strdup("");
			args->n++;
		}
		i = end + 1;
	}
}

static void
fuzz_args_free(VnArgs *args)
{
	for (int i = 0; i < args->n; i++)
	{
		free(args->items[i].key);
		free(args->items[i].value);
	}
	free(args->items);
}

/*
 * The statement must be well quoted whatever the request said: every value
 * is a $n parameter and every identifier a "quoted" one, so scanning the SQL
 * must end outside any quote, see no comment and no second statement, and
 * name no parameter beyond nparams.
 */
static void
fuzz_check_sql(const VnQuery *q)
{
	const char *s = q->sql.data;
	size_t		n = q->sql.len;
	char		quote = 0;

	FUZZ_CHECK(s != NULL);
	FUZZ_CHECK(strlen(s) == n);
	FUZZ_CHECK(q->nparams >= 0 && q->nparams <= VN_MAX_PARAMS);
	for (int i = 0; i < q->nparams; i++)
		FUZZ_CHECK(q->params[i] != NULL);
	for (size_t i = 0; i < n; i++)
	{
		if (quote)
		{
			if (s[i] == quote)
			{
				if (s[i + 1] == quote)
					i++; /* a doubled quote stays inside */
				else
					quote = 0;
			}
			continue;
		}
		if (s[i] == '"' || s[i] == '\'')
			quote = s[i];
		else if (s[i] == ';' || (s[i] == '-' && s[i + 1] == '-') || (s[i] == '/' && s[i + 1] == '*'))
		{
			fprintf(stderr, "fuzz: unquoted '%c' at %zu in: %s\n", s[i], i, s);
			abort();
		}
		else if (s[i] == '$' && s[i + 1] >= '0' && s[i + 1] <= '9')
		{
			long k = strtol(s + i + 1, NULL, 10);

			FUZZ_CHECK(k >= 1 && k <= q->nparams);
		}
	}
	if (quote)
	{
		fprintf(stderr, "fuzz: statement ends inside %c...%c: %s\n", quote, quote, s);
		abort();
	}
}

#endif
