/** All activities, built from their dependencies. Workflows import only the type. */
import { createTmcUserActivities, type TmcUserActivityDeps } from './tmcUsers';

export type ActivityDeps = TmcUserActivityDeps;

export function createActivities(deps: ActivityDeps) {
  return {
    ...createTmcUserActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
