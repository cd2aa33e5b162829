/** All activities, built from their dependencies. Workflows import only the type. */
import { createHeadlessLmsImportActivities } from './headlessLmsImport';
import { createSignupActivities, type SignupActivityDeps } from './signups';
import { createTmcUserActivities, type TmcUserActivityDeps } from './tmcUsers';

export type ActivityDeps = TmcUserActivityDeps & SignupActivityDeps;

export function createActivities(deps: ActivityDeps) {
  return {
    ...createTmcUserActivities(deps),
    ...createSignupActivities(deps),
    ...createHeadlessLmsImportActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
