-- Argo CD action "resume" of a modelops.io ChampionChallenger (docs/gitops.md): sets
-- spec.paused to false. A paused challenge stops evaluating and moving traffic (a swap under
-- way finishes first). This edits spec: Git should say the same, or Argo CD shows the object
-- OutOfSync (and self-heal undoes it).
obj.spec.paused = false
return obj
