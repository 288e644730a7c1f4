-- Argo CD action "approve" of a modelops.io ChampionChallenger (docs/gitops.md): what
-- `kubectl modelops approve` does. The approval names the running challenge
-- (status.machine.challengeId), so it never carries over to a later one.
-- The modelops-approvals admission policy accepts it only when modelops.io/approved-by is the
-- requesting user, and Argo CD sends the request as its own account: the chart value
-- gitops.argocd.serviceAccount replaces the name below (or edit it when copying by hand).
local argocd_user = "system:serviceaccount:argocd:argocd-server"

local status = obj.status or {}
local phase = status.phase or "Idle"
local challenge = (status.machine or {}).challengeId
if challenge == nil or challenge == "" or phase ~= "AwaitingApproval" then
  error("nothing to approve: " .. obj.metadata.name .. " is " .. phase
    .. ", not AwaitingApproval", 0)
end
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["modelops.io/approved-version"] = challenge
obj.metadata.annotations["modelops.io/approved-by"] = argocd_user
return obj
