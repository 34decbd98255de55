/*-------------------------------------------------------------------------
 *
 * state_machine.c
 *	  Status machines declared as data, checked by the engine.
 *
 * An aggregate registered with a state column has its allowed transitions
 * in ventros.aggregate_transitions: (from_state, to_state, event_type), where
 * a NULL from_state names an allowed initial state.  A change of the state
 * column to a pair not listed raises VN002.  The values are compared as the
 * column's text output, so a boolean "active" column or a text "status"
 * column are declared the same way.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "engine.h"
#include "errors.h"

/*
 * vn_state_machine_load
 *		Read agg's transitions into agg->cxt.  The caller is connected to SPI.
 */
void
vn_state_machine_load(VnAggregate *agg)
{
	Oid	  argtypes[1] = {TEXTOID};
	Datum args[1];
	int	  ret;

	args[0] = CStringGetTextDatum(agg->name);
	ret = SPI_execute_with_args("SELECT from_state, to_state, event_type "
								"FROM ventros.aggregate_transitions WHERE aggregate = $1 "
								"ORDER BY from_state NULLS FIRST, to_state",
								1, argtypes, args, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read transitions of %s: %s", agg->name, SPI_result_code_string(ret));

	agg->ntransitions = (int) SPI_processed;
	agg->transitions = MemoryContextAllocZero(agg->cxt, sizeof(VnTransition) * Max(agg->ntransitions, 1));
	for (int i = 0; i < agg->ntransitions; i++)
	{
		HeapTuple tuple = SPI_tuptable->vals[i];
		TupleDesc desc = SPI_tuptable->tupdesc;
		char	 *from = SPI_getvalue(tuple, desc, 1);
		char	 *to = SPI_getvalue(tuple, desc, 2);
		char	 *event = SPI_getvalue(tuple, desc, 3);

		agg->transitions[i].from_state = from ? MemoryContextStrdup(agg->cxt, from) : NULL;
		agg->transitions[i].to_state = MemoryContextStrdup(agg->cxt, to);
		agg->transitions[i].event_type = event ? MemoryContextStrdup(agg->cxt, event) : NULL;
		if (from == NULL)
			agg->has_initial = true;
	}
}

/*
 * vn_state_transition
 *		The declared transition from from_state (NULL: creation) to to_state,
 *		or VN002 naming it.  A creation is free when no initial state is
 *		declared.  Returns NULL when nothing is declared for a free creation.
 */
const VnTransition *
vn_state_transition(const VnAggregate *agg, const char *from_state, const char *to_state,
					const char *id)
{
	for (int i = 0; i < agg->ntransitions; i++)
	{
		const VnTransition *t = &agg->transitions[i];

		if (strcmp(t->to_state, to_state) != 0)
			continue;
		if ((from_state == NULL && t->from_state == NULL) ||
			(from_state != NULL && t->from_state != NULL && strcmp(from_state, t->from_state) == 0))
			return t;
	}
	if (from_state == NULL)
	{
		if (!agg->has_initial)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_VN_TRANSITION_NOT_ALLOWED),
				 errmsg("%s cannot be created with status \"%s\"", agg->name, to_state),
				 errhint("See ventros.aggregate_transitions for the initial statuses of %s.", agg->name)));
	}
	ereport(ERROR,
			(errcode(ERRCODE_VN_TRANSITION_NOT_ALLOWED),
			 errmsg("%s %s cannot change status from \"%s\" to \"%s\"", agg->name, id, from_state, to_state),
			 errdetail("The transition %s -> %s is not allowed for %s.", from_state, to_state, agg->name),
			 errhint("See ventros.aggregate_transitions for the allowed transitions.")));
	return NULL; /* keep compiler quiet */
}
